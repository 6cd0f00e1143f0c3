# Several sessions over one loaded model: the weights are shared (one Text
# segment), each session has its own run, breakpoints and KV cache.
# filter: s/^Device cpu: .*/Device cpu: (free memory)/; s/ in [0-9.]* ms ([0-9.]* [KMG]B\/s)\]/ in (time)]/; /^Kept for reuse: /d
load models/stories260K.bin --tokenizer models/tok512.bin
break L1.resid_post if pos == 8
start "Once upon a time" -n 20
continue
session new other
info sessions
info breakpoints
run "Lily and the dog" -n 12
info sessions
info memory
session main
bt
continue
session other
info text
session main
info text
info kv
# a swap-out and a swap-in (what the backend keeps for reuse, "Kept for reuse:",
# is left out: through target remote the server's backend has its own history)
session swapout other
info memory
session swapin other
info memory
