{
  "targets": [
    {
      "target_name": "ladder_sockopt",
      "sources": ["sockopt.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
