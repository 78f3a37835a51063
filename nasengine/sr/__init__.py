"""The SR toolkit shared by the engine and every plugin: image I/O, MATLAB-exact resizing, colour
conversion, PSNR/SSIM, training data, a trainer and benchmark evaluation.

A leaf package: it depends on torch, numpy and pillow only, never on the rest of the engine
(apart from the shared exception types in ``nasengine.errors``).
"""
