# A limit on the KV pages of all sessions (--kv-limit): a session that needs
# pages swaps out the least recently used paused one, which comes back when
# it runs again and goes on as if it had never left.  stories260K: a 16-token
# page of all 5 layers is 20 KiB, so 60k holds three pages; each run needs two.
load models/stories260K.gguf --kv-limit 60k
break token 10
run "Once upon a time" -n 20
session new b
run "Once upon a time" -n 20
info sessions
session main
delete
continue
info sessions
