package pdq

// PackedRGB is an image whose packed 8-bit RGB rows (3 bytes per pixel,
// counted from the top of its bounds) lie in one buffer, stride bytes
// apart, such as encoders/imageprep's RGBImage. Where cgo is on, hashers
// read such images with the C downsampler (downsample.c), bit-identical to
// the Go one; without cgo (a pure-Go build of the query client, for one)
// they go through RowRGB as before.
type PackedRGB interface {
	PackedRGB() (pix []byte, stride int)
}
