package encoders

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvORTLib names the environment variable that points at the ONNX Runtime
// shared library (libonnxruntime.so) when no explicit path is configured.
const EnvORTLib = "XMODAL_ORT_LIB"

// ErrORTNotFound is returned (wrapped) when no ONNX Runtime shared library can
// be found. Its message is the one line shown to users.
var ErrORTNotFound = errors.New("onnxruntime library not found: run scripts/ort-setup.sh or set " + EnvORTLib)

// Execution providers accepted in Options.Provider.
const (
	ProviderCPU      = "cpu"
	ProviderCUDA     = "cuda"
	ProviderTensorRT = "tensorrt"
)

// libNames are the file names tried in a directory, in order.
var libNames = []string{"libonnxruntime.so", "libonnxruntime.so.1", "libonnxruntime.dylib", "onnxruntime.dll"}

// ortEnv guards onnxruntime_go's process-global environment. It is the only
// package-level state in encoders: onnxruntime_go keeps one OrtEnv per
// process, so every Load shares it. Unlike sync.Once, a failed initialisation
// (for instance a missing library) may be retried with another path.
var ortEnv struct {
	mu      sync.Mutex
	path    string // library the environment was initialised from; "" when not initialised
	version string
}

// libSearch is the input of resolveLibPath, split out so the lookup order can
// be tested without touching the process environment.
type libSearch struct {
	explicit string   // Options.LibPath
	env      string   // value of XMODAL_ORT_LIB
	dirs     []string // start directories whose ancestors hold .cache/ort/*/
	exeDir   string   // directory of the running executable
}

// defaultLibSearch gathers the lookup inputs from the process.
func defaultLibSearch(explicit string) libSearch {
	s := libSearch{explicit: explicit, env: os.Getenv(EnvORTLib)}
	if wd, err := os.Getwd(); err == nil {
		s.dirs = append(s.dirs, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		s.exeDir = filepath.Dir(exe)
		// A binary built into <repo>/bin finds <repo>/.cache/ort too.
		s.dirs = append(s.dirs, s.exeDir)
	}
	return s
}

// resolveLibPath finds the ONNX Runtime shared library. Order: the explicit
// option, $XMODAL_ORT_LIB, <ancestor>/.cache/ort/<version>/libonnxruntime.so
// for every ancestor of the start directories (newest version first), then
// the executable's directory. An explicit path or env value that does not
// exist is an error rather than a silent fall-through.
func resolveLibPath(s libSearch) (string, error) {
	if s.explicit != "" {
		return checkLib(s.explicit, "ort library option")
	}
	if s.env != "" {
		return checkLib(s.env, EnvORTLib)
	}
	seen := map[string]bool{}
	for _, start := range s.dirs {
		dir, err := filepath.Abs(start)
		if err != nil {
			continue
		}
		for {
			if !seen[dir] {
				seen[dir] = true
				if p := newestCachedLib(filepath.Join(dir, ".cache", "ort")); p != "" {
					return p, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if s.exeDir != "" {
		for _, n := range libNames {
			p := filepath.Join(s.exeDir, n)
			if isFile(p) {
				return p, nil
			}
		}
	}
	return "", ErrORTNotFound
}

// checkLib accepts a library file, or a directory holding one.
func checkLib(p, from string) (string, error) {
	st, err := os.Stat(p)
	if err == nil && st.IsDir() {
		for _, n := range libNames {
			if q := filepath.Join(p, n); isFile(q) {
				return q, nil
			}
		}
		err = os.ErrNotExist
	}
	if err != nil {
		return "", fmt.Errorf("%w (%s=%s does not exist)", ErrORTNotFound, from, p)
	}
	return p, nil
}

// newestCachedLib returns the library of the highest version under
// root/<version>/, or "" when there is none.
func newestCachedLib(root string) string {
	ents, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	var vers []string
	for _, e := range ents {
		if e.IsDir() && isFile(filepath.Join(root, e.Name(), "libonnxruntime.so")) {
			vers = append(vers, e.Name())
		}
	}
	if len(vers) == 0 {
		return ""
	}
	sort.Slice(vers, func(i, j int) bool { return versionLess(vers[j], vers[i]) })
	return filepath.Join(root, vers[0], "libonnxruntime.so")
}

// versionLess compares dotted versions numerically ("1.24.1" < "1.30.0").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		ai, aerr := strconv.Atoi(as[i])
		bi, berr := strconv.Atoi(bs[i])
		if aerr != nil || berr != nil {
			if as[i] != bs[i] {
				return as[i] < bs[i]
			}
			continue
		}
		if ai != bi {
			return ai < bi
		}
	}
	return len(as) < len(bs)
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// initORT initialises the process-wide ONNX Runtime environment once. Later
// calls return the library path already in use; a later call that names a
// different explicit library is an error, since one process holds one ORT.
// It is safe to call from several goroutines and loaders.
func initORT(explicit string, log *slog.Logger) (string, error) {
	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.path != "" {
		if explicit != "" && !samePath(explicit, ortEnv.path) {
			return "", fmt.Errorf("onnxruntime already initialised from %s; cannot switch to %s in the same process", ortEnv.path, explicit)
		}
		return ortEnv.path, nil
	}
	path, err := resolveLibPath(defaultLibSearch(explicit))
	if err != nil {
		return "", err
	}
	if ort.IsInitialized() {
		// Someone initialised onnxruntime_go outside this package; share it.
		ortEnv.path, ortEnv.version = path, ort.GetVersion()
		return path, nil
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("onnxruntime: initialising %s: %s (xmodal needs ORT >= 1.24; run scripts/ort-setup.sh)", path, oneLine(err.Error()))
	}
	ortEnv.path, ortEnv.version = path, ort.GetVersion()
	log.Info("onnxruntime initialised", "lib", path, "version", ortEnv.version)
	return path, nil
}

func samePath(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}

// oneLine squeezes multi-line ORT messages into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// newSessionOptions builds ORT session options for the given threads and
// execution provider. The caller destroys the result.
func newSessionOptions(opt Options, libPath string) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxruntime session options: %w", err)
	}
	fail := func(err error) (*ort.SessionOptions, error) {
		so.Destroy()
		return nil, err
	}
	if opt.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(opt.IntraOpThreads); err != nil {
			return fail(fmt.Errorf("onnxruntime: intra-op threads %d: %w", opt.IntraOpThreads, err))
		}
	}
	if opt.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(opt.InterOpThreads); err != nil {
			return fail(fmt.Errorf("onnxruntime: inter-op threads %d: %w", opt.InterOpThreads, err))
		}
	}
	if !opt.Spin {
		for _, k := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
			if err := so.AddSessionConfigEntry(k, "0"); err != nil {
				return fail(fmt.Errorf("onnxruntime: %s: %w", k, err))
			}
		}
	}
	switch p := opt.provider(); p {
	case ProviderCPU:
	case ProviderCUDA:
		if err := appendCUDA(so); err != nil {
			return fail(providerError(p, libPath, err))
		}
	case ProviderTensorRT:
		if err := appendTensorRT(so); err != nil {
			return fail(providerError(p, libPath, err))
		}
	default:
		return fail(fmt.Errorf("unknown execution provider %q (want %s, %s or %s)", opt.Provider, ProviderCPU, ProviderCUDA, ProviderTensorRT))
	}
	return so, nil
}

func appendCUDA(so *ort.SessionOptions) error {
	o, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer o.Destroy()
	return so.AppendExecutionProviderCUDA(o)
}

func appendTensorRT(so *ort.SessionOptions) error {
	o, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return err
	}
	defer o.Destroy()
	return so.AppendExecutionProviderTensorRT(o)
}

// ErrProviderUnavailable is wrapped by errors about an execution provider that
// the loaded ONNX Runtime library does not have.
var ErrProviderUnavailable = errors.New("execution provider unavailable")

func providerError(p, libPath string, err error) error {
	msg := oneLine(err.Error())
	if strings.Contains(msg, "not enabled in this build") {
		return fmt.Errorf("%w: the onnxruntime library %s has no %s execution provider (a CPU-only build; use provider %q or point %s at a GPU build of onnxruntime): %s",
			ErrProviderUnavailable, libPath, p, ProviderCPU, EnvORTLib, msg)
	}
	return fmt.Errorf("%w: could not enable the %s execution provider of %s (are the CUDA/cuDNN/TensorRT libraries on the loader path?): %s",
		ErrProviderUnavailable, p, libPath, msg)
}
