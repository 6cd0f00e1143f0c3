# The same model from GGUF, with the tokenizer inside the file.
load models/stories260K.gguf
run "Once upon a time" -n 32
break L4.resid_post if pos == 10
run
print L4.resid_post [0, 0:4]
finish
print logits --top 3
