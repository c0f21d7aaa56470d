package plugin

import (
	"fmt"
	"strings"
	"testing"

	pb "github.com/sslrun/sslrun/core/plugin/proto"
	"github.com/sslrun/sslrun/core/plugin/shm"
)

// TestViewTensorsRejectsOverflowingShape sends the host-side decoder a
// reference whose dimensions each pass refFromPB's limit but whose product
// overflows int: it must be rejected with an error naming the shape, not
// turned into a tensor with a huge shape and no values.
func TestViewTensorsRejectsOverflowingShape(t *testing.T) {
	seg, err := shm.Create(1, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	r := shm.NewRemote(false)
	defer r.Close()
	if err := r.Sync([]shm.Desc{seg.Desc()}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		shape []int64
	}{
		{"wraps to zero", []int64{1 << 40, 1 << 24}},
		{"wraps to small", []int64{1 << 40, 1 << 40, 1 << 40, 4}},
		{"too large", []int64{1 << 40}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := &pb.Tensors{Refs: map[string]*pb.Ref{"x": {Segment: 1, Shape: tc.shape, Dtype: pb.DType(shm.Float32)}}}
			got, _, err := viewTensors(r, ts)
			if err == nil {
				t.Fatalf("accepted: shape %v with %d values", got["x"].Shape, len(got["x"].Data))
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tc.shape)) {
				t.Errorf("error %q does not name the shape %v", err, tc.shape)
			}
		})
	}
}
