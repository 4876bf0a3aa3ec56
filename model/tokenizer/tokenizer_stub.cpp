// replaced by the tokenizer
