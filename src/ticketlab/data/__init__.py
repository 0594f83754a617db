"""Data: language-modelling corpora (`corpus`, `sources`: text files and Hugging Face datasets),
tokenizers (`tokenizer`, `tokenizer_kinds`), tokenized blocks (`tokens`), features, and the demo's
synthetic language (`grammar`, `synthetic`). Downstream tasks (GLUE, SQuAD) are `tasks/`. Import the
submodules directly."""
