package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeCIFAR writes n records in the exact CIFAR binary layout: label
// byte(s) then 1024 R, 1024 G, 1024 B bytes. Pixel p of record i, channel c
// holds byte(i*7 + c*31 + p), labels come from labelOf(i).
func writeCIFAR(t *testing.T, path string, n int, labelOf func(i int) []byte) {
	t.Helper()
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, labelOf(i)...)
		for c := 0; c < 3; c++ {
			for p := 0; p < 1024; p++ {
				b = append(b, byte(i*7+c*31+p))
			}
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCIFAR10(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, CIFAR10Dir)
	os.Mkdir(dir, 0o755)
	const per = 4
	for k := 1; k <= 5; k++ {
		writeCIFAR(t, filepath.Join(dir, "data_batch_"+string(rune('0'+k))+".bin"), per, func(i int) []byte { return []byte{byte((k*per + i) % 10)} })
	}
	writeCIFAR(t, filepath.Join(dir, "test_batch.bin"), 3, func(i int) []byte { return []byte{byte(9 - i)} })
	names := "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"
	os.WriteFile(filepath.Join(dir, "batches.meta.txt"), []byte(names), 0o644)

	t.Setenv(DataEnv, root) // found through $SSLRUN_DATA/cifar-10-batches-bin
	tr, err := LoadCIFAR10("", Train)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Len() != 5*per || tr.C != 3 || tr.H != 32 || tr.W != 32 || tr.NumClasses != 10 || tr.Classes[9] != "truck" {
		t.Fatalf("train: n=%d %dx%dx%d classes=%v", tr.Len(), tr.C, tr.H, tr.W, tr.Classes)
	}
	// Sample 6 is record 2 of data_batch_2: label (2*4+2)%10 = 0.
	if tr.Labels[6] != 0 {
		t.Errorf("label[6] = %d, want 0", tr.Labels[6])
	}
	img := tr.Bytes(6)
	if img[0] != byte(2*7) || img[1024+5] != byte(2*7+31+5) || img[2048+1023] != byte((2*7+62+1023)%256) {
		t.Errorf("pixels of sample 6 not in CHW order: %d %d %d", img[0], img[1024+5], img[2048+1023])
	}
	te, err := LoadCIFAR10(dir, Test)
	if err != nil {
		t.Fatal(err)
	}
	if te.Len() != 3 || te.Labels[0] != 9 || te.Name != "cifar10/test" {
		t.Errorf("test: %s n=%d labels=%v", te.Name, te.Len(), te.Labels)
	}
}

func TestCIFAR100(t *testing.T) {
	dir := t.TempDir()
	writeCIFAR(t, filepath.Join(dir, "train.bin"), 5, func(i int) []byte { return []byte{byte(i * 4), byte(i*20 + 3)} })
	writeCIFAR(t, filepath.Join(dir, "test.bin"), 2, func(i int) []byte { return []byte{19, 99} })
	fine, err := LoadCIFAR100(dir, Train, false)
	if err != nil {
		t.Fatal(err)
	}
	coarse, err := LoadCIFAR100(dir, Train, true)
	if err != nil {
		t.Fatal(err)
	}
	if fine.NumClasses != 100 || coarse.NumClasses != 20 || fine.Labels[4] != 83 || coarse.Labels[4] != 16 {
		t.Errorf("fine %v (%d classes), coarse %v (%d classes)", fine.Labels, fine.NumClasses, coarse.Labels, coarse.NumClasses)
	}
	if fine.Digest == coarse.Digest {
		t.Error("fine and coarse views share a digest")
	}
	if img := fine.Bytes(3); img[2048] != byte(3*7+62) {
		t.Errorf("blue plane starts with %d", img[2048])
	}
	te, err := LoadCIFAR100(dir, Test, false)
	if err != nil || te.Len() != 2 || te.Labels[1] != 99 {
		t.Fatalf("test split: %v %+v", err, te)
	}
}

func TestCIFARErrors(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(dir string)
		load   func(dir string) error
		expect []string
	}{
		{"missing", func(string) {}, func(d string) error { _, err := LoadCIFAR10(d, Test); return err },
			[]string{"test_batch.bin", "expected an existing CIFAR binary file", "found none"}},
		{"truncated", func(d string) {
			writeCIFAR(t, filepath.Join(d, "test_batch.bin"), 2, func(int) []byte { return []byte{1} })
			p := filepath.Join(d, "test_batch.bin")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-100], 0o644)
		}, func(d string) error { _, err := LoadCIFAR10(d, Test); return err },
			[]string{"test_batch.bin", "size", "multiple of the 3073-byte record", "30730000 bytes", "found 6046 bytes (1 records + 2973 bytes)"}},
		{"cifar100 file read as cifar10", func(d string) {
			// 3 CIFAR-100 records are 9222 bytes = 3.0009... CIFAR-10 records.
			writeCIFAR(t, filepath.Join(d, "test_batch.bin"), 3, func(int) []byte { return []byte{5, 50} })
		}, func(d string) error { _, err := LoadCIFAR10(d, Test); return err },
			[]string{"test_batch.bin", "size", "multiple of the 3073-byte record"}},
		{"bad label", func(d string) {
			writeCIFAR(t, filepath.Join(d, "test_batch.bin"), 2, func(i int) []byte { return []byte{byte(10 + i)} })
		}, func(d string) error { _, err := LoadCIFAR10(d, Test); return err },
			[]string{"test_batch.bin", "label byte 0 of record 0", "expected < 10", "found 10"}},
		{"bad fine label", func(d string) {
			writeCIFAR(t, filepath.Join(d, "train.bin"), 1, func(int) []byte { return []byte{3, 100} })
		}, func(d string) error { _, err := LoadCIFAR100(d, Train, true); return err },
			[]string{"train.bin", "label byte 1 of record 0", "expected < 100", "found 100"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(dir)
			err := tc.load(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tc.expect {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
	t.Run("no directory", func(t *testing.T) {
		t.Setenv(DataEnv, "")
		_, err := LoadCIFAR10("", Train)
		if err == nil || !IsNotFound(err) || !strings.Contains(err.Error(), CIFAR10Dir) {
			t.Errorf("err = %v", err)
		}
	})
}
