package encoders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/xmodal/xmodal/internal/vecmath"
)

// Options configure Load. The zero value runs on the CPU with ONNX Runtime's
// default thread pools and finds the library itself (see resolveLibPath).
type Options struct {
	// LibPath is the ONNX Runtime shared library (a file, or a directory
	// holding libonnxruntime.so). Empty: $XMODAL_ORT_LIB, then
	// <cwd or executable ancestors>/.cache/ort/<version>/libonnxruntime.so,
	// then the executable's directory.
	LibPath string
	// IntraOpThreads and InterOpThreads size ORT's thread pools per session;
	// 0 keeps ORT's default (one intra-op thread per physical core).
	IntraOpThreads, InterOpThreads int
	// Provider is the execution provider: "cpu" (default), "cuda" or
	// "tensorrt". A provider the library lacks is an error at Load.
	Provider string
	// Spin lets ORT's idle thread-pool workers spin-wait for the next
	// operator, ORT's own default. Off here: spinning lowers the latency of
	// one call on dedicated cores, but it burns CPU that the pipeline's other
	// work (image decoding and preprocessing, the other tower, the sink) needs
	// on the same cores. On a 2-core machine ingest with the demo model spent
	// about 1 ms of CPU per image post (4.6 against 3.5 ms) and 0.35 ms per
	// text post (0.9 against 0.56 ms) in spinning workers
	// (BenchmarkIngestRound, docs/pipeline.md).
	Spin bool
	// Sessions is the number of ONNX Runtime sessions per tower, each with its
	// own thread pools (IntraOpThreads each). Concurrent calls are spread over
	// them round-robin; 0 or 1 is one session, which also accepts concurrent
	// calls but runs them on one shared pool. Several small sessions can beat
	// one wide one when batches are small (the pool then keeps every core
	// busy with whole batches rather than with the parallel parts of one).
	Sessions int
	// Logger receives load-time information; nil uses slog.Default().
	Logger *slog.Logger
}

func (o Options) provider() string {
	if o.Provider == "" {
		return ProviderCPU
	}
	return strings.ToLower(o.Provider)
}

// Model is a loaded dual-tower model: an image and a text encoder that map
// into one embedding space. All Embed methods are safe for concurrent use:
// ONNX Runtime sessions allow concurrent Run calls, and each call builds its
// own input and output tensors. Close waits for running calls to finish.
type Model struct {
	dir     string
	man     Manifest
	libPath string
	image   *tower
	text    *tower
	prep    *prep // tokenizer and image preprocessing (prep.go)

	mu     sync.RWMutex // held for reading by every run, for writing by Close
	closed bool
}

// tower is one graph's ONNX sessions with the inputs xmodal feeds it, in order.
type tower struct {
	name   string // "image" or "text", for messages
	file   string
	sess   []*ort.DynamicAdvancedSession // Options.Sessions of them
	next   atomic.Uint32                 // round-robin over sess
	inputs []string
	output string
	dim    int // from the output shape; 0 when the graph leaves it symbolic
	// dynamicSeq: the text graph accepts sequences shorter than the context.
	dynamicSeq bool
}

// Load opens a model directory: dir/model.json, or the transformers.js
// two-file layout (vision_model.onnx + text_model.onnx, at the top or under
// onnx/) with defaults inferred. It checks that the files exist, that the
// tensor names are in the graphs, that the image input matches the
// manifest's size and that both towers and the manifest agree on the
// embedding dimension.
func Load(dir string, opt Options) (*Model, error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	start := time.Now()
	man, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ what, rel string }{{"image model", man.Image.File}, {"text model", man.Text.File}, {"tokenizer vocab", man.Text.Tokenizer.Vocab}} {
		if f.rel == "" {
			continue
		}
		if p := filepath.Join(dir, f.rel); !isFile(p) {
			return nil, fmt.Errorf("model %s: %s file %s not found", dir, f.what, p)
		}
	}
	libPath, err := initORT(opt.LibPath, log)
	if err != nil {
		return nil, err
	}
	m := &Model{dir: dir, man: man, libPath: libPath}
	ok := false
	defer func() {
		if !ok {
			m.destroy()
		}
	}()
	if m.image, err = m.openImage(opt); err != nil {
		return nil, err
	}
	if m.text, err = m.openText(opt); err != nil {
		return nil, err
	}
	if err := m.settleDim(); err != nil {
		return nil, err
	}
	if m.prep, err = newPrep(dir, m.man); err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	ok = true
	log.Info("model loaded", "dir", dir, "model", m.Version(), "dim", m.man.Dim,
		"inferred", m.man.Inferred, "provider", opt.provider(), "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

// graphInfo reads a graph's inputs and outputs with a throw-away session
// (optimisations off, so it is cheap).
func graphInfo(path string) (ins, outs []ort.InputOutputInfo, err error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, err
	}
	defer so.Destroy()
	if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
		return nil, nil, err
	}
	ins, outs, err = ort.GetInputOutputInfoWithOptions(path, so)
	if err != nil {
		return nil, nil, fmt.Errorf("reading ONNX graph %s: %s", path, oneLine(err.Error()))
	}
	return ins, outs, nil
}

func names(infos []ort.InputOutputInfo) string {
	var s []string
	for _, i := range infos {
		s = append(s, i.Name)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func find(infos []ort.InputOutputInfo, name string) (ort.InputOutputInfo, bool) {
	for _, i := range infos {
		if i.Name == name {
			return i, true
		}
	}
	return ort.InputOutputInfo{}, false
}

// checkIO checks that the graph has the named inputs and output, that it
// needs no other inputs, and returns the output's info.
func checkIO(what, path string, ins, outs []ort.InputOutputInfo, inNames []string, outName string) (ort.InputOutputInfo, error) {
	for _, n := range inNames {
		if _, ok := find(ins, n); !ok {
			return ort.InputOutputInfo{}, fmt.Errorf("%s model %s has no input %q; its inputs are %s (set the name in %s)", what, path, n, names(ins), ManifestFile)
		}
	}
	for _, i := range ins {
		if !slices.Contains(inNames, i.Name) {
			return ort.InputOutputInfo{}, fmt.Errorf("%s model %s needs input %q that xmodal does not feed (it feeds %v)", what, path, i.Name, inNames)
		}
	}
	o, ok := find(outs, outName)
	if !ok {
		return o, fmt.Errorf("%s model %s has no output %q; its outputs are %s (set the name in %s)", what, path, outName, names(outs), ManifestFile)
	}
	if o.DataType != ort.TensorElementDataTypeFloat {
		return o, fmt.Errorf("%s model %s: output %q is %s; xmodal needs float32 embeddings", what, path, outName, dtypeName(o.DataType))
	}
	if len(o.Dimensions) != 2 {
		return o, fmt.Errorf("%s model %s: output %q has shape %v; want [batch, dim]", what, path, outName, o.Dimensions)
	}
	return o, nil
}

func (m *Model) openImage(opt Options) (*tower, error) {
	im := m.man.Image
	path := filepath.Join(m.dir, im.File)
	ins, outs, err := graphInfo(path)
	if err != nil {
		return nil, err
	}
	out, err := checkIO("image", path, ins, outs, []string{im.Input}, im.Output)
	if err != nil {
		return nil, err
	}
	in, _ := find(ins, im.Input)
	if in.DataType != ort.TensorElementDataTypeFloat {
		return nil, fmt.Errorf("image model %s: input %q is %s; xmodal feeds float32 pixels (float16 exports are not supported)", path, im.Input, dtypeName(in.DataType))
	}
	side := int64(im.CropSize())
	d := in.Dimensions
	if len(d) != 4 || !dimOK(d[1], 3) || !dimOK(d[2], side) || !dimOK(d[3], side) {
		return nil, fmt.Errorf("image model %s: input %q has shape %v; the manifest's image size (crop %d) gives [batch, 3, %d, %d]", path, im.Input, d, side, side, side)
	}
	if d[0] >= 0 {
		return nil, fmt.Errorf("image model %s: input %q has a fixed batch size (shape %v); export it with a dynamic batch axis", path, im.Input, d)
	}
	return newTower(opt, m.libPath, "image", path, []string{im.Input}, out)
}

func (m *Model) openText(opt Options) (*tower, error) {
	tx := &m.man.Text
	path := filepath.Join(m.dir, tx.File)
	ins, outs, err := graphInfo(path)
	if err != nil {
		return nil, err
	}
	if tx.AttentionMask == "" {
		if _, ok := find(ins, DefaultAttentionMask); ok {
			tx.AttentionMask = DefaultAttentionMask
		}
	}
	inNames := []string{tx.InputIDs}
	if tx.AttentionMask != "" {
		inNames = append(inNames, tx.AttentionMask)
	}
	out, err := checkIO("text", path, ins, outs, inNames, tx.Output)
	if err != nil {
		return nil, err
	}
	ids, _ := find(ins, tx.InputIDs)
	if m.man.Inferred {
		switch ids.DataType {
		case ort.TensorElementDataTypeInt32:
			tx.InputIDsDType = DTypeInt32
		case ort.TensorElementDataTypeInt64:
			tx.InputIDsDType = DTypeInt64
		}
		if len(ids.Dimensions) == 2 && ids.Dimensions[1] > 0 {
			tx.Tokenizer.ContextLength = int(ids.Dimensions[1])
		}
	}
	want := map[string]ort.TensorElementDataType{DTypeInt64: ort.TensorElementDataTypeInt64, DTypeInt32: ort.TensorElementDataTypeInt32}[tx.InputIDsDType]
	for _, n := range inNames {
		in, _ := find(ins, n)
		if in.DataType != want {
			return nil, fmt.Errorf("text model %s: input %q is %s but the manifest's input_ids_dtype is %s", path, n, dtypeName(in.DataType), tx.InputIDsDType)
		}
		if len(in.Dimensions) != 2 || !dimOK(in.Dimensions[1], int64(tx.Tokenizer.ContextLength)) {
			return nil, fmt.Errorf("text model %s: input %q has shape %v; want [batch, %d] (context length)", path, n, in.Dimensions, tx.Tokenizer.ContextLength)
		}
		if in.Dimensions[0] >= 0 {
			return nil, fmt.Errorf("text model %s: input %q has a fixed batch size (shape %v); export it with a dynamic batch axis", path, n, in.Dimensions)
		}
	}
	t, err := newTower(opt, m.libPath, "text", path, inNames, out)
	if err != nil {
		return nil, err
	}
	t.dynamicSeq = ids.Dimensions[1] < 0
	return t, nil
}

// dimOK accepts a symbolic dimension (-1) or the wanted size.
func dimOK(got, want int64) bool { return got < 0 || got == want }

func newTower(opt Options, libPath, name, path string, inputs []string, out ort.InputOutputInfo) (*tower, error) {
	so, err := newSessionOptions(opt, libPath)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	t := &tower{name: name, file: path, inputs: inputs, output: out.Name}
	for range max(opt.Sessions, 1) {
		sess, err := ort.NewDynamicAdvancedSession(path, inputs, []string{out.Name}, so)
		if err != nil {
			t.destroy()
			return nil, fmt.Errorf("%s model %s: creating session: %s", name, path, oneLine(err.Error()))
		}
		t.sess = append(t.sess, sess)
	}
	if d := out.Dimensions[1]; d > 0 {
		t.dim = int(d)
	}
	return t, nil
}

// settleDim reconciles the manifest's dimension with the towers' output
// shapes. A tower whose graph leaves the dimension symbolic is probed with
// one dummy input.
func (m *Model) settleDim() error {
	for _, t := range []*tower{m.image, m.text} {
		if t.dim == 0 {
			d, err := m.probeDim(t)
			if err != nil {
				return fmt.Errorf("%s model %s: output dimension is symbolic and probing it failed: %w", t.name, t.file, err)
			}
			t.dim = d
		}
	}
	if m.image.dim != m.text.dim {
		return fmt.Errorf("model %s: image embeddings have dimension %d (%s) but text embeddings %d (%s); the towers do not share a space",
			m.dir, m.image.dim, m.image.file, m.text.dim, m.text.file)
	}
	if m.man.Dim != 0 && m.man.Dim != m.image.dim {
		return fmt.Errorf("model %s: %s says dim %d but the ONNX towers output %d", m.dir, ManifestFile, m.man.Dim, m.image.dim)
	}
	m.man.Dim = m.image.dim
	return nil
}

func (m *Model) probeDim(t *tower) (int, error) {
	var (
		out [][]float32
		err error
	)
	ctx := context.Background()
	if t == m.image {
		s := m.man.Image.CropSize()
		out, err = m.embedPixels(ctx, make([]float32, 3*s*s), 1, 0)
	} else {
		ids := make([]int64, m.man.Text.Tokenizer.ContextLength)
		ids[0], ids[1] = 49406, 49407
		out, err = m.embedTokens(ctx, ids, nil, 1, 0)
	}
	if err != nil {
		return 0, err
	}
	return len(out[0]), nil
}

// Manifest returns the model's manifest with inferred fields filled in.
func (m *Model) Manifest() Manifest {
	c := m.man
	c.Hash = slices.Clone(m.man.Hash)
	return c
}

// Dir is the directory the model was loaded from.
func (m *Model) Dir() string { return m.dir }

// Dim is the embedding dimension shared by both towers.
func (m *Model) Dim() int { return m.man.Dim }

// Version identifies the model in records: "name@version".
func (m *Model) Version() string { return m.man.Name + "@" + m.man.Version }

// ContextLength is the text tower's token context length.
func (m *Model) ContextLength() int { return m.man.Text.Tokenizer.ContextLength }

// ErrClosed is returned by calls on a closed Model.
var ErrClosed = errors.New("encoders: model is closed")

// EmbedPixels runs the image tower on n preprocessed images laid out as
// n×3×S×S float32 (CHW, normalised; S = ImageSpec's crop size) and returns n
// L2-normalised embeddings. It returns ctx's error if ctx ends first; a
// cancelled context also stops a running ONNX Runtime call.
func (m *Model) EmbedPixels(ctx context.Context, pixels []float32, n int) ([][]float32, error) {
	return m.embedPixels(ctx, pixels, n, m.man.Dim)
}

func (m *Model) embedPixels(ctx context.Context, pixels []float32, n, dim int) ([][]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("encoders: negative image count %d", n)
	}
	if n == 0 {
		return [][]float32{}, nil
	}
	s := m.man.Image.CropSize()
	if want := n * 3 * s * s; len(pixels) != want {
		return nil, fmt.Errorf("encoders: %d pixel values for %d images; want n×3×%d×%d = %d", len(pixels), n, s, s, want)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(s), int64(s)), pixels)
	if err != nil {
		return nil, fmt.Errorf("encoders: pixel tensor: %w", err)
	}
	defer in.Destroy()
	return m.run(ctx, m.image, []ort.Value{in}, n, dim)
}

// EmbedTokens runs the text tower on n token sequences of equal length
// (ids and mask are n×L, row-major, L <= the context length) and returns n
// L2-normalised embeddings. A nil mask means all ones; the mask is ignored
// by models without an attention_mask input.
func (m *Model) EmbedTokens(ctx context.Context, ids, mask []int64, n int) ([][]float32, error) {
	return m.embedTokens(ctx, ids, mask, n, m.man.Dim)
}

func (m *Model) embedTokens(ctx context.Context, ids, mask []int64, n, dim int) ([][]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("encoders: negative text count %d", n)
	}
	if n == 0 {
		return [][]float32{}, nil
	}
	if len(ids) == 0 || len(ids)%n != 0 {
		return nil, fmt.Errorf("encoders: %d token ids do not split into %d equal sequences", len(ids), n)
	}
	l := len(ids) / n
	if cl := m.man.Text.Tokenizer.ContextLength; l > cl {
		return nil, fmt.Errorf("encoders: sequence length %d exceeds the model's context length %d", l, cl)
	}
	if mask != nil && len(mask) != len(ids) {
		return nil, fmt.Errorf("encoders: attention mask has %d values for %d token ids", len(mask), len(ids))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	shape := ort.NewShape(int64(n), int64(l))
	var inputs []ort.Value
	defer func() {
		for _, v := range inputs {
			v.Destroy()
		}
	}()
	add := func(vals []int64) error {
		var (
			v   ort.Value
			err error
		)
		if m.man.Text.InputIDsDType == DTypeInt32 {
			v32 := make([]int32, len(vals))
			for i, x := range vals {
				v32[i] = int32(x)
			}
			v, err = ort.NewTensor(shape, v32)
		} else {
			v, err = ort.NewTensor(shape, vals)
		}
		if err != nil {
			return fmt.Errorf("encoders: token tensor: %w", err)
		}
		inputs = append(inputs, v)
		return nil
	}
	if err := add(ids); err != nil {
		return nil, err
	}
	if m.man.Text.AttentionMask != "" {
		if mask == nil {
			mask = make([]int64, len(ids))
			for i := range mask {
				mask[i] = 1
			}
		}
		if err := add(mask); err != nil {
			return nil, err
		}
	}
	return m.run(ctx, m.text, inputs, n, dim)
}

// run executes one tower and returns its n rows, L2-normalised. dim 0
// accepts any width (used to probe symbolic output shapes).
func (m *Model) run(ctx context.Context, t *tower, inputs []ort.Value, n, dim int) ([][]float32, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	outputs := []ort.Value{nil}
	sess := t.sess[0]
	if len(t.sess) > 1 {
		sess = t.sess[int(t.next.Add(1))%len(t.sess)]
	}
	var err error
	if ctx.Done() == nil {
		err = sess.Run(inputs, outputs)
	} else {
		err = runCancellable(ctx, sess, inputs, outputs)
	}
	if outputs[0] != nil {
		defer outputs[0].Destroy()
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("encoders: %s model: %s", t.name, oneLine(err.Error()))
	}
	out, ok := outputs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, fmt.Errorf("encoders: %s model output %q is %T, want a float32 tensor", t.name, t.output, outputs[0])
	}
	shape := out.GetShape()
	if len(shape) != 2 || shape[0] != int64(n) || (dim > 0 && shape[1] != int64(dim)) {
		return nil, fmt.Errorf("encoders: %s model output %q has shape %v; want [%d %d]", t.name, t.output, shape, n, dim)
	}
	w := int(shape[1])
	data := out.GetData()
	flat := make([]float32, n*w) // one allocation for all rows
	copy(flat, data)
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = flat[i*w : (i+1)*w : (i+1)*w]
		vecmath.Normalize(rows[i])
	}
	return rows, nil
}

// runCancellable runs the session with RunOptions whose terminate flag is set
// when ctx ends, so a long batch stops early.
func runCancellable(ctx context.Context, sess *ort.DynamicAdvancedSession, inputs, outputs []ort.Value) error {
	ro, err := ort.NewRunOptions()
	if err != nil {
		return err
	}
	defer ro.Destroy()
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		ro.Terminate()
	})
	err = sess.RunWithOptions(inputs, outputs, ro)
	if !stop() {
		<-done // the terminate call started; let it finish before ro is destroyed
	}
	return err
}

// Close releases the ONNX Runtime sessions after running calls finish. The
// process-wide ORT environment stays up for other models. Close is
// idempotent.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	return m.destroy()
}

func (m *Model) destroy() error {
	var errs []error
	for _, t := range []*tower{m.image, m.text} {
		if t != nil {
			errs = append(errs, t.destroy())
		}
	}
	return errors.Join(errs...)
}

func (t *tower) destroy() error {
	var errs []error
	for _, s := range t.sess {
		if err := s.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("%s session: %w", t.name, err))
		}
	}
	t.sess = nil
	return errors.Join(errs...)
}

// dtypeName is a short name for an ONNX element type ("float32", "int64").
func dtypeName(t ort.TensorElementDataType) string {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return "float32"
	case ort.TensorElementDataTypeFloat16:
		return "float16"
	case ort.TensorElementDataTypeDouble:
		return "float64"
	case ort.TensorElementDataTypeInt32:
		return "int32"
	case ort.TensorElementDataTypeInt64:
		return "int64"
	case ort.TensorElementDataTypeUint8:
		return "uint8"
	}
	return t.String()
}
