{
  "targets": [
    {
      "target_name": "ladder_aead",
      "sources": ["aead.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
