package data

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CIFAR binary layout: one record per image, label byte(s) then 3072 bytes
// of pixels (1024 red, 1024 green, 1024 blue, each 32x32 row-major), which
// is already CHW.
const (
	cifarPixels    = 3 * 32 * 32
	cifar10Record  = 1 + cifarPixels
	cifar100Record = 2 + cifarPixels
	// cifarPerFile is the record count of every published CIFAR-10 batch
	// file and of CIFAR-100's test.bin; CIFAR-100's train.bin has 50000.
	cifarPerFile = 10000
)

// Default directory names under $SSLRUN_DATA: the names the official
// binary tarballs (cifar-10-binary.tar.gz, cifar-100-binary.tar.gz) extract
// to.
const (
	CIFAR10Dir  = "cifar-10-batches-bin"
	CIFAR100Dir = "cifar-100-binary"
)

func cifarDir(dir, sub string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if e := os.Getenv(DataEnv); e != "" {
		return filepath.Join(e, sub), nil
	}
	return "", fmt.Errorf("data: no directory given and %s unset: extract the CIFAR binary tarball so that $%s/%s exists (see docs/data.md): %w",
		DataEnv, DataEnv, sub, os.ErrNotExist)
}

// LoadCIFAR10 loads a CIFAR-10 split from the binary version
// (data_batch_1.bin .. data_batch_5.bin for Train, test_batch.bin for
// Test; gzipped copies are accepted too). dir, when empty, defaults to
// $SSLRUN_DATA/cifar-10-batches-bin. Every file must be a whole number of
// 3073-byte records with labels < 10; class names are read from
// batches.meta.txt when present.
func LoadCIFAR10(dir string, split Split) (*Dataset, error) {
	dir, err := cifarDir(dir, CIFAR10Dir)
	if err != nil {
		return nil, err
	}
	files := []string{"test_batch.bin"}
	if split == Train {
		files = []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}
	}
	d, err := loadCIFAR(dir, files, cifar10Record, 0, 10)
	if err != nil {
		return nil, err
	}
	d.Name = "cifar10/" + split.String()
	d.Classes = readClassNames(filepath.Join(dir, "batches.meta.txt"), 10)
	d.computeDigest()
	return d, nil
}

// LoadCIFAR100 loads a CIFAR-100 split from the binary version (train.bin
// or test.bin, records of 3074 bytes: coarse label, fine label, pixels).
// dir, when empty, defaults to $SSLRUN_DATA/cifar-100-binary. coarse selects
// the 20 superclass labels instead of the 100 fine ones.
func LoadCIFAR100(dir string, split Split, coarse bool) (*Dataset, error) {
	dir, err := cifarDir(dir, CIFAR100Dir)
	if err != nil {
		return nil, err
	}
	labelAt, classes, meta, kind := 1, 100, "fine_label_names.txt", "fine"
	if coarse {
		labelAt, classes, meta, kind = 0, 20, "coarse_label_names.txt", "coarse"
	}
	d, err := loadCIFAR(dir, []string{split.String() + ".bin"}, cifar100Record, labelAt, classes)
	if err != nil {
		return nil, err
	}
	d.Name = "cifar100-" + kind + "/" + split.String()
	d.Classes = readClassNames(filepath.Join(dir, meta), classes)
	d.computeDigest()
	return d, nil
}

// loadCIFAR concatenates the records of files. The label used is byte
// labelAt of each record; every label byte of the record is range-checked
// (CIFAR-100's coarse byte < 20 and fine byte < 100).
func loadCIFAR(dir string, files []string, record, labelAt, numClasses int) (*Dataset, error) {
	labelBytes := record - cifarPixels
	d := &Dataset{C: 3, H: 32, W: 32, NumClasses: numClasses}
	for _, name := range files {
		path, ok := existing(filepath.Join(dir, name), filepath.Join(dir, name+".gz"))
		if !ok {
			return nil, &FileError{Path: filepath.Join(dir, name), What: "file", Expected: "an existing CIFAR binary file (see docs/data.md)", Found: "none"}
		}
		b, err := readContent(path, int64(cifarPerFile*record))
		if err != nil {
			return nil, err
		}
		if len(b) == 0 || len(b)%record != 0 {
			return nil, &FileError{Path: path, What: "size", Expected: fmt.Sprintf("a positive multiple of the %d-byte record (published files: %d bytes)", record, cifarPerFile*record),
				Found: fmt.Sprintf("%d bytes (%d records + %d bytes)", len(b), len(b)/record, len(b)%record)}
		}
		n := len(b) / record
		if d.Pix == nil {
			d.Pix = make([]uint8, 0, n*cifarPixels*len(files))
		}
		for i := 0; i < n; i++ {
			rec := b[i*record : (i+1)*record]
			for j := 0; j < labelBytes; j++ {
				lim := numClasses
				if labelBytes == 2 {
					lim = []int{20, 100}[j]
				}
				if int(rec[j]) >= lim {
					return nil, &FileError{Path: path, What: fmt.Sprintf("label byte %d of record %d", j, i),
						Expected: fmt.Sprintf("< %d (is this a CIFAR-%d file?)", lim, map[int]int{cifar10Record: 10, cifar100Record: 100}[record]), Found: fmt.Sprint(rec[j])}
				}
			}
			d.Labels = append(d.Labels, int32(rec[labelAt]))
			d.Pix = append(d.Pix, rec[labelBytes:]...)
		}
		d.Files = append(d.Files, FileInfo{Path: path, Role: name, Size: int64(len(b)), SHA256: sha256Hex(b)})
	}
	return d, nil
}

// readClassNames reads one name per line; nil when absent or malformed,
// since the names are cosmetic.
func readClassNames(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			names = append(names, s)
		}
	}
	if len(names) != n {
		return nil
	}
	return names
}
