{
  "targets": [
    {
      "target_name": "tandem_native",
      "sources": [
        "src/addon.cc",
        "src/address.cc",
        "src/errors.cc",
        "src/nfqueue.cc",
        "src/notify.cc",
        "src/sockopt.cc",
        "src/transparent_connect.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags": ["-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"],
      "libraries": ["-lnetfilter_queue", "-lnfnetlink"]
    }
  ]
}
