"""Language modelling: the MLM and KD objectives (`objectives`, `options`) and the MLM head
(`mlm_head`), pre-training evaluation (`evaluation`), and the `pretrain` verb (`pretrain_config`:
its torch-free config; `pretrain`, with its inputs' checks and its output in `pretrain_inputs` and
`pretrain_output`), from scratch or continuing a checkpoint (`--init`)."""
