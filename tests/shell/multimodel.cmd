# expect-exit: 1
# Several models under one VRAM budget (load --name ... --vram-budget): the
# budget is a shared pool's; each layer is resident or in host memory, and a
# model that needs room evicts the least recently used layers of the others,
# never the one a paused session is stopped in.  stories260K: 5 layers of
# 178 KiB; a session's working set is 9.4 to 11.4 MiB, so 32M holds the
# fixed parts of three models and one and a half models' layers.
load models/stories260K.bin --tokenizer models/tok512.bin --name a --vram-budget 32M
load models/stories260K.gguf --name b
load models/stories260K.bin --tokenizer models/tok512.bin --name c
info models
use a
run "Once upon a time" -n 12
info models
use b
break L2.attn_out
run "Once upon a time" -n 12
use c
run "Once upon a time" -n 12
use a
run "Once upon a time" -n 12
# b's L2 stays while b is stopped in it
info models
info sessions
session b
delete
continue
session new a2 --model a
run "Once upon a time" -n 12
info sessions
unload b
info models
use zzz
session new x --model zzz
load models/stories260K.bin --name a
load models/stories260K.bin --name d --vram-budget 1k
unload c
unload a
info models
