# expect-exit: 1
# A site that is not there: a near name when there is one (a typo, or the
# kinds a cut-off name begins), else why -- the layers' range, a layer's
# kinds -- never unrelated sites; and JSON says just what text says
# (issue 14).
load models/stories260K.bin --tokenizer models/tok512.bin
break L9.resid_post
break L5.q
break foo
break L3.foo
break L3.resid_pots
break L3.resid
break embd
break resid_post
break L9.*
break L*.resid_pots
break L03.q
break L01-3.*
break L0.q
start "Once upon a time" -n 2
print L9.resid_post
print foo
display L3.atn
set output json
break L9.resid_post
break foo
break L3.resid_pots
break L9.*
break L03.q
print L9.resid_post
