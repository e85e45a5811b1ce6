"""`kdns serve --follow KUBECONFIG`: DNS for a cluster that kdns follows, not owns.

`kubeconfig` reads the file; `client` lists and watches the followed API; `mirror` keeps
the followed objects and the ClusterIndex in step; `follower` runs it all (see there).
"""
