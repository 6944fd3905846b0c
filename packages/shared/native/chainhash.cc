// Batch chain hashing for appendlog (docs/FORMAT.md section 4).
//
//   Hn = SHA-256(prefix || Hn-1 || encoding of entry n)
//
// Node's per-call hashing costs about 1 us per entry, almost all of it the
// JS/C++ crossing, the digest lookup and a Buffer allocation; SHA-256 of a
// 100-byte entry takes about 0.15 us in OpenSSL. This addon hashes a whole
// batch of entries in one call, with OpenSSL (Node's own, exported to addons),
// absorbing the prefix once. It adds no cryptography of its own, and
// chain.ts falls back to node:crypto when it is not built; tests check that
// both give the same bytes.
#include <node_api.h>
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <string.h>

namespace {

// A typed array of the given element type: its data pointer and length.
template <typename T>
bool GetArray(napi_env env, napi_value v, napi_typedarray_type want, T** data, size_t* len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  size_t length;
  void* ptr;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &offset) != napi_ok || type != want) return false;
  *data = static_cast<T*>(ptr);
  *len = length;
  return true;
}

bool GetBytes(napi_env env, napi_value v, unsigned char** data, size_t* len) {
  return GetArray(env, v, napi_uint8_array, data, len);
}

bool GetU32(napi_env env, napi_value v, uint32_t** data, size_t* len) {
  return GetArray(env, v, napi_uint32_array, data, len);
}

// chain(prefix, head32, data, offsets, count, out) -> index of the first
// entry whose hash differs from out[i] when `compare` is true, else -1.
// offsets has count + 1 elements: entry i is data[offsets[i], offsets[i+1]).
// head32 is updated in place to the last hash. Without compare, the hashes
// are written to out (count * 32 bytes).
napi_value Chain(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 7) {
    napi_throw_type_error(env, nullptr, "chain: 7 arguments expected");
    return nullptr;
  }
  unsigned char *prefix, *head, *data, *out;
  size_t prefixLen, headLen, dataLen, outLen, offLen;
  uint32_t* offsets;
  uint32_t count;
  bool compare;
  if (!GetBytes(env, argv[0], &prefix, &prefixLen) || !GetBytes(env, argv[1], &head, &headLen) || headLen != 32 ||
      !GetBytes(env, argv[2], &data, &dataLen) || !GetU32(env, argv[3], &offsets, &offLen) ||
      napi_get_value_uint32(env, argv[4], &count) != napi_ok || !GetBytes(env, argv[5], &out, &outLen) ||
      napi_get_value_bool(env, argv[6], &compare) != napi_ok) {
    napi_throw_type_error(env, nullptr, "chain: bad arguments");
    return nullptr;
  }
  if (offLen < static_cast<size_t>(count) + 1 || outLen < static_cast<size_t>(count) * 32) {
    napi_throw_range_error(env, nullptr, "chain: offsets or out too short");
    return nullptr;
  }
  for (uint32_t i = 0; i < count; i++) {
    if (offsets[i] > offsets[i + 1] || offsets[i + 1] > dataLen) {
      napi_throw_range_error(env, nullptr, "chain: offsets out of range");
      return nullptr;
    }
  }
  // The low-level SHA-256 functions: the EVP layer's per-message set-up
  // (provider dispatch, context allocation) costs more than hashing a
  // 100-byte entry. Deprecated in OpenSSL 3 in favour of EVP, still exported.
  int64_t mismatch = -1;
  unsigned char h[32];
  bool ok = true;
  SHA256_CTX base;
  ok = SHA256_Init(&base) == 1 && SHA256_Update(&base, prefix, prefixLen) == 1;
  for (uint32_t i = 0; ok && i < count; i++) {
    SHA256_CTX c = base;  // the prefix is absorbed once
    ok = SHA256_Update(&c, head, 32) == 1 && SHA256_Update(&c, data + offsets[i], offsets[i + 1] - offsets[i]) == 1 &&
         SHA256_Final(h, &c) == 1;
    if (!ok) break;
    memcpy(head, h, 32);
    if (compare) {
      if (memcmp(out + static_cast<size_t>(i) * 32, h, 32) != 0) {
        mismatch = i;
        break;
      }
    } else {
      memcpy(out + static_cast<size_t>(i) * 32, h, 32);
    }
  }
  if (!ok) {
    napi_throw_error(env, nullptr, "chain: OpenSSL digest failed");
    return nullptr;
  }
  napi_value result;
  napi_create_int64(env, mismatch, &result);
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "chain", NAPI_AUTO_LENGTH, Chain, nullptr, &fn);
  napi_set_named_property(env, exports, "chain", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
