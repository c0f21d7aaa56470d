// Package nn holds sslrun's neural-network layers and models: Linear,
// Conv2d, BatchNorm, pooling, the CIFAR ResNet BasicBlock, the MLP
// projector/predictor heads of SimSiam/SimCLR/BYOL, the W1/W2/W3 backbones
// of the benchmark workloads, PyTorch-default initialisation and weight
// files PyTorch can load.
//
// # Modules
//
// A Module computes its output on an autodiff.Tape (Forward) and exposes
// its state (parameters and buffers) through Visit, in PyTorch's
// state_dict order and with PyTorch's state_dict names: a model built here
// and the same model built with torch.nn have identical keys and shapes
// ("0.weight", "1.running_mean", "3.conv1.weight", "3.shortcut.0.weight",
// ...), so a Save'd file loads into torch with load_state_dict(strict=True)
// and a torch state_dict loads here with Load.
//
// Parameters are autodiff.Vars created with autodiff.NewParam: they outlive
// every tape step and Backward accumulates into their Grad. Buffers
// (running_mean, running_var, num_batches_tracked) are plain tensors and an
// int64 owned by the BatchNorm layers.
//
// # Modes
//
// SetTrain(true) (the default after construction, as in PyTorch) makes
// BatchNorm use batch statistics and update its running statistics;
// SetTrain(false) uses the running statistics. The mode is independent of
// the tape's grad mode: the BYOL target network runs in train mode under
// no-grad.
//
// # Allocation
//
// Forward allocates nothing itself: the layers only call tape ops, which
// draw their memory from the tape's arena, so a Forward+Backward step
// allocates nothing once the tape has warmed up on steps of the same shapes
// (TestForwardBackwardAllocatesNothing; the W1 benchmark needed two warm-up
// steps before its arena stopped growing).
//
// # Typical use
//
//	spec, _ := nn.Workload("convnet-cifar") // or build a ModelSpec
//	m, _ := nn.Build(spec, rand.New(rand.NewPCG(seed, 0)))
//	_, z1, p1 := m.Forward(tp, tp.Input(x1)) // per view: BN statistics per view
//	...
//	params := m.Params() // names, Kind (weight / bias / BN affine), Var
//	target := m.Clone()  // BYOL: averaged by optim.EMA (see core/train)
//	m.Save(path, meta)   // torch: load_state_dict(strict=True) per part
package nn
