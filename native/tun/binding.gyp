{
  "targets": [
    {
      "target_name": "ladder_tun",
      "sources": ["tun.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
