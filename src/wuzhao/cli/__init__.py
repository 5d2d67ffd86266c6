"""The `wuzhao` command: a thin noun-verb layer over the SDK (`wuzhao.client`)."""
