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

#include <thread>

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

// Chains entries [from, to) onto head (updated in place). See ChainImpl.
int64_t Run(const SHA256_CTX& base, unsigned char* head, const unsigned char* data, const uint32_t* offsets, uint32_t from,
            uint32_t to, unsigned char* out, bool compare, uint32_t tail, bool* ok) {
  unsigned char h[32];
  for (uint32_t i = from; i < to; i++) {
    SHA256_CTX c = base;  // the prefix is absorbed once
    if (SHA256_Update(&c, head, 32) != 1 || SHA256_Update(&c, data + offsets[i], offsets[i + 1] - offsets[i] - tail) != 1 ||
        SHA256_Final(h, &c) != 1) {
      *ok = false;
      return -1;
    }
    memcpy(head, h, 32);
    if (tail > 0) {
      // Hashes always go to out; `compare` checks each against its tag.
      memcpy(out + static_cast<size_t>(i) * 32, h, 32);
      if (compare && memcmp(data + offsets[i + 1] - tail, h, tail) != 0) return i;
    } else if (compare) {
      if (memcmp(out + static_cast<size_t>(i) * 32, h, 32) != 0) return i;
    } else {
      memcpy(out + static_cast<size_t>(i) * 32, h, 32);
    }
  }
  return -1;
}

// chain(prefix, head32, data, offsets, count, out) -> index of the first
// entry whose hash differs from out[i] when `compare` is true, else -1.
// offsets has count + 1 elements: entry i is data[offsets[i], offsets[i+1]).
// head32 is updated in place to the last hash. Without compare, the hashes
// are written to out (count * 32 bytes).
//
// chainTail(..., tail) is the same with an 8th argument: each span
// data[offsets[i], offsets[i+1]) ends in `tail` bytes that are not hashed
// (the check tag of a version 2 bundle record, docs/FORMAT.md section 9.7),
// so records can be hashed where they lie, without copying them together.
napi_value ChainImpl(napi_env env, napi_callback_info info, bool withTail) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < (withTail ? 8u : 7u)) {
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
  uint32_t tail = 0;
  if (withTail && (napi_get_value_uint32(env, argv[7], &tail) != napi_ok || tail > 32)) {
    napi_throw_type_error(env, nullptr, "chain: bad tail");
    return nullptr;
  }
  if (offLen < static_cast<size_t>(count) + 1 || outLen < static_cast<size_t>(count) * 32) {
    napi_throw_range_error(env, nullptr, "chain: offsets or out too short");
    return nullptr;
  }
  for (uint32_t i = 0; i < count; i++) {
    if (offsets[i] > offsets[i + 1] || offsets[i + 1] > dataLen || offsets[i + 1] - offsets[i] < tail) {
      napi_throw_range_error(env, nullptr, "chain: offsets out of range");
      return nullptr;
    }
  }
  // The low-level SHA-256 functions: the EVP layer's per-message set-up
  // (provider dispatch, context allocation) costs more than hashing a
  // 100-byte entry. Deprecated in OpenSSL 3 in favour of EVP, still exported.
  SHA256_CTX base;
  if (SHA256_Init(&base) != 1 || SHA256_Update(&base, prefix, prefixLen) != 1) {
    napi_throw_error(env, nullptr, "chain: OpenSSL digest failed");
    return nullptr;
  }
  bool ok = true;
  int64_t mismatch;
  // Comparing against stored full hashes (store rows, version 1 bundles):
  // every entry can be checked on its own from the stored hash before it,
  // so a second thread checks the second half of a large batch. If the first
  // half matches, the stored hash it starts from is the true one; if it does
  // not, its first mismatch is the answer whatever the second half says. So
  // the first changed entry is still named exactly.
  if (compare && tail == 0 && count >= 2048) {
    uint32_t mid = count / 2;
    unsigned char head2[32];
    memcpy(head2, out + static_cast<size_t>(mid - 1) * 32, 32);
    int64_t m2 = -1;
    bool ok2 = true;
    std::thread t([&] { m2 = Run(base, head2, data, offsets, mid, count, out, true, 0, &ok2); });
    mismatch = Run(base, head, data, offsets, 0, mid, out, true, 0, &ok);
    t.join();
    ok = ok && ok2;
    if (ok && mismatch < 0) {
      mismatch = m2;
      memcpy(head, head2, 32);
    }
  } else {
    mismatch = Run(base, head, data, offsets, 0, count, out, compare, tail, &ok);
  }
  if (!ok) {
    napi_throw_error(env, nullptr, "chain: OpenSSL digest failed");
    return nullptr;
  }
  napi_value result;
  napi_create_int64(env, mismatch, &result);
  return result;
}

// interleave(data, hashes, count, tail, out) -> bytes written, or -1 if data
// does not hold exactly `count` whole entries. Writes each entry encoding of
// data followed by the first `tail` bytes of its 32-byte hash: the records of
// a version 2 bundle (docs/FORMAT.md section 9.7).
napi_value Interleave(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  unsigned char *data, *hashes, *out;
  size_t dataLen, hashesLen, outLen;
  uint32_t count, tail;
  if (argc < 5 || !GetBytes(env, argv[0], &data, &dataLen) || !GetBytes(env, argv[1], &hashes, &hashesLen) ||
      napi_get_value_uint32(env, argv[2], &count) != napi_ok || napi_get_value_uint32(env, argv[3], &tail) != napi_ok ||
      !GetBytes(env, argv[4], &out, &outLen) || tail > 32 || hashesLen < static_cast<size_t>(count) * 32) {
    napi_throw_type_error(env, nullptr, "interleave: bad arguments");
    return nullptr;
  }
  size_t off = 0, pos = 0;
  int64_t result = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (dataLen - off < 26) { result = -1; break; }
    const unsigned char* h = data + off + 22;
    size_t len = 26 + ((static_cast<size_t>(h[0]) << 24) | (h[1] << 16) | (h[2] << 8) | h[3]);
    if (dataLen - off < len || outLen - pos < len + tail) { result = -1; break; }
    memcpy(out + pos, data + off, len);
    memcpy(out + pos + len, hashes + static_cast<size_t>(i) * 32, tail);
    off += len;
    pos += len + tail;
  }
  if (result == 0) result = off == dataLen ? static_cast<int64_t>(pos) : -1;
  napi_value v;
  napi_create_int64(env, result, &v);
  return v;
}

// chainTailAsync(prefix, head, data, offsets, count, out, tail) -> Promise of
// the same result as chainTail(..., compare = true, tail), computed on a
// libuv worker thread: the JS thread reads and checks the next records
// meanwhile (the second core). The caller must not touch head, data,
// offsets or out until the promise settles; they are held referenced.
struct AsyncJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  napi_ref refs[4] = {nullptr, nullptr, nullptr, nullptr};
  SHA256_CTX base;
  unsigned char* head = nullptr;
  const unsigned char* data = nullptr;
  const uint32_t* offsets = nullptr;
  uint32_t count = 0;
  unsigned char* out = nullptr;
  uint32_t tail = 0;
  int64_t mismatch = -1;
  bool ok = true;
};

void AsyncExecute(napi_env, void* p) {
  AsyncJob* j = static_cast<AsyncJob*>(p);
  j->mismatch = Run(j->base, j->head, j->data, j->offsets, 0, j->count, j->out, true, j->tail, &j->ok);
}

void AsyncComplete(napi_env env, napi_status status, void* p) {
  AsyncJob* j = static_cast<AsyncJob*>(p);
  napi_value v;
  if (status == napi_ok && j->ok) {
    napi_create_int64(env, j->mismatch, &v);
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    napi_value msg;
    napi_create_string_utf8(env, "chain: OpenSSL digest failed", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, nullptr, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  }
  for (napi_ref r : j->refs)
    if (r != nullptr) napi_delete_reference(env, r);
  napi_delete_async_work(env, j->work);
  delete j;
}

napi_value ChainTailAsync(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  unsigned char *prefix, *head, *data, *out;
  size_t prefixLen, headLen, dataLen, outLen, offLen;
  uint32_t* offsets;
  uint32_t count, tail;
  if (argc < 7 || !GetBytes(env, argv[0], &prefix, &prefixLen) || !GetBytes(env, argv[1], &head, &headLen) || headLen != 32 ||
      !GetBytes(env, argv[2], &data, &dataLen) || !GetU32(env, argv[3], &offsets, &offLen) ||
      napi_get_value_uint32(env, argv[4], &count) != napi_ok || !GetBytes(env, argv[5], &out, &outLen) ||
      napi_get_value_uint32(env, argv[6], &tail) != napi_ok || tail < 1 || tail > 32) {
    napi_throw_type_error(env, nullptr, "chainTailAsync: bad arguments");
    return nullptr;
  }
  if (offLen < static_cast<size_t>(count) + 1 || outLen < static_cast<size_t>(count) * 32) {
    napi_throw_range_error(env, nullptr, "chainTailAsync: offsets or out too short");
    return nullptr;
  }
  for (uint32_t i = 0; i < count; i++) {
    if (offsets[i] > offsets[i + 1] || offsets[i + 1] > dataLen || offsets[i + 1] - offsets[i] < tail) {
      napi_throw_range_error(env, nullptr, "chainTailAsync: offsets out of range");
      return nullptr;
    }
  }
  AsyncJob* j = new AsyncJob();
  if (SHA256_Init(&j->base) != 1 || SHA256_Update(&j->base, prefix, prefixLen) != 1) {
    delete j;
    napi_throw_error(env, nullptr, "chain: OpenSSL digest failed");
    return nullptr;
  }
  j->head = head;
  j->data = data;
  j->offsets = offsets;
  j->count = count;
  j->out = out;
  j->tail = tail;
  napi_value argsToHold[4] = {argv[1], argv[2], argv[3], argv[5]};
  for (int i = 0; i < 4; i++) napi_create_reference(env, argsToHold[i], 1, &j->refs[i]);
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "appendlog.chainTailAsync", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, nullptr, name, AsyncExecute, AsyncComplete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

napi_value Chain(napi_env env, napi_callback_info info) { return ChainImpl(env, info, false); }
napi_value ChainTail(napi_env env, napi_callback_info info) { return ChainImpl(env, info, true); }

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "chain", NAPI_AUTO_LENGTH, Chain, nullptr, &fn);
  napi_set_named_property(env, exports, "chain", fn);
  napi_create_function(env, "chainTail", NAPI_AUTO_LENGTH, ChainTail, nullptr, &fn);
  napi_set_named_property(env, exports, "chainTail", fn);
  napi_create_function(env, "interleave", NAPI_AUTO_LENGTH, Interleave, nullptr, &fn);
  napi_set_named_property(env, exports, "interleave", fn);
  napi_create_function(env, "chainTailAsync", NAPI_AUTO_LENGTH, ChainTailAsync, nullptr, &fn);
  napi_set_named_property(env, exports, "chainTailAsync", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
