# Loading: a failed load keeps the old model; a second load replaces it once
# no run is paused; --dtype converts the weights.
# expect-exit: 1
# filter: s/cpu ([0-9]* threads)/cpu (N threads)/
load models/stories260K.bin --tokenizer models/tok512.bin
info layers
load models/no-such-model.bin
load models/tok512.bin --tokenizer models/tok512.bin
load models/stories260K.bin --device gpu9
load models/stories260K.bin --dtype q3
info model
start "Once upon a time" -n 4
load models/stories260K.gguf
kill
load models/stories260K.gguf --dtype f16
info model
run "Once upon a time" -n 12
print L1.q [-1] --save q.npy
steer L1.q add q.npy * 0 --persist
run
info steers
unload
info model
load models/stories260K.bin
load models/stories260K.bin --tokenizer models/tok512.bin --device cpu
run "Once upon a time" -n 12
