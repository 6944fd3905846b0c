{
  "targets": [
    {
      "target_name": "chainhash",
      "sources": ["chainhash.cc"],
      "cflags_cc": ["-O2"]
    }
  ]
}
