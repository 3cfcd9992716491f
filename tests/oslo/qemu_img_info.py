"""Parse `info` output files with oslo.utils' QemuImgInfo, as OpenStack
does, and print the attributes it gives as one JSON object per file.

Usage: qemu_img_info.py json|human FILE...
"""
import json
import sys
import warnings

from oslo_utils import imageutils

warnings.simplefilter("ignore")
fmt = sys.argv[1]
for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as f:
        info = imageutils.QemuImgInfo(f.read(), format=fmt)
    print(json.dumps(vars(info), sort_keys=True, default=str))
