package runner

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// bars are a run's progress bars: epochs, and the steps of the current
// epoch with loss, images/s and ETA. All methods are no-ops without a
// Progress (not a terminal).
type bars struct {
	p      *mpb.Progress
	name   string
	epochs int
	epoch  *mpb.Bar
	steps  *mpb.Bar
	loss   atomic.Uint32 // float32 bits
	ips    atomic.Uint64 // float64 bits
}

func newBars(p *mpb.Progress, name string, epochs, done int) *bars {
	b := &bars{p: p, name: name, epochs: epochs}
	if p == nil {
		return b
	}
	b.loss.Store(math.Float32bits(float32(math.NaN())))
	b.epoch = p.AddBar(int64(epochs),
		mpb.PrependDecorators(decor.Name(name+" epochs", decor.WCSyncSpaceR), decor.CountersNoUnit("%d/%d", decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO, decor.WCSyncSpace)),
	)
	b.epoch.SetCurrent(int64(done))
	return b
}

func (b *bars) startEpoch(epoch, total, start int) {
	if b.p == nil {
		return
	}
	b.steps = b.p.AddBar(int64(total), mpb.BarRemoveOnComplete(), mpb.BarPriority(1<<20),
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("epoch %d/%d", epoch+1, b.epochs), decor.WCSyncSpaceR), decor.CountersNoUnit("%d/%d", decor.WCSyncSpace)),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				return fmt.Sprintf("loss %.4f", math.Float32frombits(b.loss.Load()))
			}, decor.WCSyncSpace),
			decor.Any(func(decor.Statistics) string {
				return fmt.Sprintf("%.0f img/s", math.Float64frombits(b.ips.Load()))
			}, decor.WCSyncSpace),
			decor.EwmaETA(decor.ET_STYLE_GO, 30, decor.WCSyncSpace),
		),
	)
	b.steps.SetCurrent(int64(start))
}

func (b *bars) step(loss float32, ips float64, dt time.Duration) {
	if b.p == nil || b.steps == nil {
		return
	}
	b.loss.Store(math.Float32bits(loss))
	b.ips.Store(math.Float64bits(ips))
	b.steps.EwmaIncrement(dt)
}

func (b *bars) endEpoch() {
	if b.p == nil {
		return
	}
	if b.steps != nil {
		b.steps.SetTotal(-1, true)
		b.steps = nil
	}
	b.epoch.Increment()
}

func (b *bars) abort() {
	if b.p == nil {
		return
	}
	if b.steps != nil {
		b.steps.Abort(true)
		b.steps = nil
	}
}

func (b *bars) done() {
	if b.p == nil {
		return
	}
	b.abort()
	if !b.epoch.Completed() {
		b.epoch.Abort(false)
	}
	b.epoch.Wait()
}
