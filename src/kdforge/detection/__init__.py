"""Object detection as a second task of the trainer: COCO-format data, torchvision's Faster R-CNN with FPN, and
the logit and feature distillation terms of the papers' detection setups (`kdforge.detection.task`)."""
