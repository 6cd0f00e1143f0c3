# expect-exit: 1
# --kv-dtype f16: the KV cache in halves, half the bytes of a page; the run
# goes on as with f32 (stories260K's greedy text is the same), a checkpoint
# restores it, and bad values say what is accepted.
load models/stories260K.gguf --kv-dtype bf16
load models/stories260K.gguf --kv-dtype f16
info kv
break token 6
run "Once upon a time" -n 12
checkpoint
continue
restore 1
continue
info kv
load models/stories260K.gguf
run "Once upon a time" -n 12
info kv
