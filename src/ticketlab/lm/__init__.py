"""Language modelling: MLM and KD objectives, pre-training, pre-training evaluation."""
