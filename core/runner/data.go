package runner

import (
	"context"
	"fmt"

	"github.com/sslrun/sslrun/core/data"
	"github.com/sslrun/sslrun/core/data/augment"
	"github.com/sslrun/sslrun/core/pipeline"
	"github.com/sslrun/sslrun/core/plugin"
	"github.com/sslrun/sslrun/core/tensor"
)

// datasetCache keeps loaded datasets for the runs of one invocation: a
// study's runs usually share them, and loading CIFAR takes seconds.
type datasetCache map[string]*data.Dataset

// load returns the dataset a pipeline block describes, limited to its
// first Limit samples.
func (c datasetCache) load(d pipeline.Dataset) (*data.Dataset, error) {
	key := fmt.Sprintf("%s|%s|%s|%v|%dx%dx%d", d.Source, d.Split, d.Dir, d.Coarse, d.Channels, d.Height, d.Width)
	ds, ok := c[key]
	if !ok {
		split := data.Train
		if d.Split == "test" {
			split = data.Test
		}
		var err error
		switch d.Source {
		case pipeline.SourceMNIST:
			ds, err = data.LoadMNIST(d.Dir, split)
		case pipeline.SourceFashionMNIST:
			ds, err = data.LoadFashionMNIST(d.Dir, split)
		case pipeline.SourceCIFAR10:
			ds, err = data.LoadCIFAR10(d.Dir, split)
		case pipeline.SourceCIFAR100:
			ds, err = data.LoadCIFAR100(d.Dir, split, d.Coarse)
		case pipeline.SourceFolder:
			ds, err = data.LoadFolder(d.Dir, d.Channels, d.Height, d.Width)
		default:
			err = fmt.Errorf("unknown source %q", d.Source)
		}
		if err != nil {
			err = fmt.Errorf("dataset %q: %w", d.Name, err)
			if data.IsNotFound(err) {
				// Missing files are the user's to provide: a usage error.
				return nil, &ConfigError{Err: err}
			}
			return nil, err
		}
		if c != nil {
			c[key] = ds
		}
	}
	return limit(ds, d.Limit), nil
}

// limit returns a view of ds's first n samples (n <= 0 or >= Len: ds).
// The view shares ds's memory.
func limit(ds *data.Dataset, n int) *data.Dataset {
	if n <= 0 || n >= ds.Len() {
		return ds
	}
	chw := ds.C * ds.H * ds.W
	v := *ds
	v.Pix = ds.Pix[:n*chw]
	v.Labels = ds.Labels[:n]
	v.Name = fmt.Sprintf("%s[:%d]", ds.Name, n)
	return &v
}

// evalPipeline is the deterministic transform applied to evaluation
// images: the training view's output size (a resize when it differs from
// the source) and its normalization, without random steps, as the SSL
// frameworks' "test transform" does.
func evalPipeline(view augment.Pipeline, c, h, w int) augment.Pipeline {
	var p augment.Pipeline
	_, oh, ow := view.OutShape(c, h, w)
	if oh != h || ow != w {
		p = append(p, &augment.Resize{H: oh, W: ow})
	}
	for _, s := range view {
		if n, ok := s.(*augment.Normalize); ok {
			p = append(p, n)
		}
	}
	return p
}

// asInput reshapes a [N, C, H, W] batch for the backbone.
func asInput(x *tensor.T, flat bool) (*tensor.T, error) {
	if !flat {
		return x, nil
	}
	return x.Reshape(x.Shape[0], -1)
}

// features computes the frozen features ("backbone" or "z") of every
// sample of ds with the encoder's Embed (eval mode: BatchNorm running
// statistics, no gradient), batch by batch through the host arena.
func features(eng *engine, ds *data.Dataset, view augment.Pipeline, flat bool, feature string, batch int) (*tensor.T, error) {
	if batch <= 0 {
		batch = 256
	}
	c, h, w := ds.Shape()
	pipe := evalPipeline(view, c, h, w)
	oc, oh, ow := pipe.OutShape(c, h, w)
	chw := oc * oh * ow
	n := ds.Len()
	var out *tensor.T
	var src, img augment.Image
	var scratch augment.Scratch
	var rng augment.RNG
	in := map[string]*tensor.T{}
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		if err := eng.host.Reset(); err != nil {
			return nil, err
		}
		shape := []int{hi - lo, oc, oh, ow}
		if flat {
			shape = []int{hi - lo, chw}
		}
		x, err := eng.host.NewTensor(shape...)
		if err != nil {
			return nil, err
		}
		for i := lo; i < hi; i++ {
			ds.Load(i, &src)
			img.CopyFrom(&src)
			pipe.Apply(&img, &rng, &scratch)
			copy(x.Data[(i-lo)*chw:(i-lo+1)*chw], img.Pix)
		}
		in["x"] = x
		name := ""
		if feature == "z" {
			name = "z"
		}
		v, err := eng.enc.Embed(context.Background(), plugin.Input{Step: plugin.Step{}, Name: name, Tensors: in})
		if err != nil {
			return nil, err
		}
		d := v.Len() / (hi - lo)
		if out == nil {
			out = tensor.New(n, d)
		}
		copy(out.Data[lo*d:hi*d], v.Data)
	}
	return out, nil
}
