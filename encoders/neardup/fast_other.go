//go:build !(cgo && amd64)

package neardup

import (
	"image"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// haveFast is false without cgo or off amd64 (where Go may fuse
// multiply-adds): the Go code runs.
const haveFast = false

const (
	cpuAVX2    = false
	maxBlurRad = 0
)

func blurC(bool, []float32, int, int, []float32, int, []float32, []float32, []float32) {
	panic("neardup: no C kernels")
}

func scanC(bool, []float32, int, int, int, float32, []float32, []int32) int {
	panic("neardup: no C kernels")
}

func windowC(bool, *plane, float64, float64, float64, float64, float64, float64, float64, float64, float64, []float32, int, *[hashFreqs][hashFreqs]float32, *[3]float64) (int, bool) {
	panic("neardup: no C kernels")
}

func coeffHashC(bool, *[hashFreqs][hashFreqs]float32, pdq.Dihedral) pdq.Hash {
	panic("neardup: no C kernels")
}

func lumaC(_ bool, _ image.Image, dst []float32) ([]float32, bool) { return dst, false }

func flatLinesC(*plane, image.Rectangle, bool, []int32, []bool) {
	panic("neardup: no C kernels")
}

func resampleC(bool, []float32, int, int, int, int, flatWeights, flatWeights, []float32, []float32) {
	panic("neardup: no C kernels")
}

func cleanC(bool, *plane, int, float32) {
	panic("neardup: no C kernels")
}
