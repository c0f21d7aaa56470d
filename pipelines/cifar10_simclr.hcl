# SimCLR, CIFAR-10, ResNet-18 (CIFAR stem): solo-learn's published recipe
# (scripts/pretrain/cifar/simclr.yaml + augmentations/symmetric.yaml;
# solo-learn reports 90.74% online linear after 1000 epochs at batch 256).
# Needs the CIFAR-10 binary version under $SSLRUN_DATA/cifar-10-batches-bin
# (see docs/data.md) and a lot of CPU time: this is for users who have both.
#
# Departures from solo-learn, forced by core/data/augment: the Gaussian
# blur needs a kernel size (3, a tenth of the image, made odd; solo-learn's
# PIL blur has none). solo-learn evaluates with an online linear classifier;
# here a kNN runs every 10 epochs and a linear probe at the end.

variable "epochs" {
  type    = number
  default = 1000
}

variable "seed" {
  type    = number
  default = 0
}

run {
  name       = "cifar10-simclr"
  seed       = var.seed
  epochs     = var.epochs
  batch_size = 256
  tags       = { method = "simclr", dataset = "cifar10", recipe = "solo-learn" }
}

dataset "train" {
  source = "cifar10"
  split  = "train"
}

dataset "test" {
  source = "cifar10"
  split  = "test"
}

augment {
  view {
    random_resized_crop {
      size  = [32]
      scale = [0.08, 1.0]
    }
    color_jitter {
      brightness = 0.8
      contrast   = 0.8
      saturation = 0.8
      hue        = 0.2
      p          = 0.8
    }
    grayscale {
      p = 0.2
    }
    gaussian_blur {
      kernel = 3
      sigma  = [0.1, 2.0]
      p      = 0.5
    }
    hflip {
      p = 0.5
    }
    normalize {
      mean = [0.4914, 0.4822, 0.4465]
      std  = [0.2470, 0.2435, 0.2616]
    }
  }
}

encoder {
  backbone = "resnet18"
  # proj_hidden_dim 2048, proj_output_dim 256. solo-learn's SimCLR
  # projector has no BatchNorm in its hidden layer; core/nn's MLP heads
  # always have one (a documented difference).
  projector {
    dims      = [2048, 256]
    last_bias = true
  }
}

loss "simclr" {
  temperature = 0.2
}

optimizer {
  name              = "lars"
  lr                = 0.4
  lr_scaling        = "linear" # solo-learn scales lr by batch_size / 256
  momentum          = 0.9
  weight_decay      = 1e-4
  eta               = 0.02
  clip_lr           = true
  exclude_bias_norm = true
}

# solo-learn's defaults: warmup_cosine, 10 warmup epochs from 3e-5, per step.
schedule {
  name            = "warmup_cosine"
  warmup_epochs   = 10
  warmup_start_lr = 3e-5
  min_lr          = 0
  per_step        = true
}

analyzer "decompose" {
  every   = 100
  tensors = ["z"]
}

evaluate "knn" {
  train        = dataset.train
  test         = dataset.test
  every_epochs = 10
}

evaluate "linear" {
  train  = dataset.train
  test   = dataset.test
  epochs = 100
  lr     = 0.1
}

checkpoint {
  every_epochs = 10
  keep         = 2
}
