{
  "targets": [
    {
      "target_name": "ladder_gzip",
      "sources": ["gzip.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-ldl"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
