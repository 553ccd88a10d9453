"""The operator side: the `govsync` command, provisioning (control), operations tools
(ops), the embedded stack and the demo scenario. Nothing on the data path imports it."""
