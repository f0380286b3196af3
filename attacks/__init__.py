"""L-inf gradient attacks: the ball they move in (`linf_ball`), Auto-PGD's search (`apgd`), a Transform graph as the
affine map of the pixels (`affine_map`), and FGSM, PGD and APGD on 8-bit images (`eight_bit`)."""
