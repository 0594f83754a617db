"""The dense pre-trained model, `full`: a sweep's baseline, no mask (`register.py`)."""
