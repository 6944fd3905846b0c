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

#include <pthread.h>

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

// Throws a RangeError and returns false unless offsets (count + 1 of them)
// cut data into spans of at least minSpan bytes each, in order.
bool CheckSpans(napi_env env, const uint32_t* offsets, size_t offLen, uint32_t count, size_t dataLen, uint32_t minSpan, const char* what) {
  if (offLen < static_cast<size_t>(count) + 1) {
    napi_throw_range_error(env, nullptr, what);
    return false;
  }
  for (uint32_t i = 0; i < count; i++) {
    if (offsets[i] > offsets[i + 1] || offsets[i + 1] > dataLen || offsets[i + 1] - offsets[i] < minSpan) {
      napi_throw_range_error(env, nullptr, what);
      return false;
    }
  }
  return true;
}

// The arguments the chaining functions share: (prefix, head32, data,
// offsets, count, out, ...). Throws (TypeError for a bad argument,
// RangeError for an out too short for count hashes) and returns false
// unless they are all there; the spans are checked by CheckSpans.
struct ChainArgs {
  unsigned char *prefix, *head, *data, *out;
  size_t prefixLen, dataLen, offLen;
  uint32_t* offsets;
  uint32_t count;
};

bool GetChainArgs(napi_env env, napi_value* argv, size_t argc, size_t want, const char* what, ChainArgs* a) {
  size_t headLen, outLen;
  if (argc < want || !GetBytes(env, argv[0], &a->prefix, &a->prefixLen) || !GetBytes(env, argv[1], &a->head, &headLen) || headLen != 32 ||
      !GetBytes(env, argv[2], &a->data, &a->dataLen) || !GetU32(env, argv[3], &a->offsets, &a->offLen) ||
      napi_get_value_uint32(env, argv[4], &a->count) != napi_ok || !GetBytes(env, argv[5], &a->out, &outLen)) {
    napi_throw_type_error(env, nullptr, what);
    return false;
  }
  if (outLen < static_cast<size_t>(a->count) * 32) {
    napi_throw_range_error(env, nullptr, what);
    return false;
  }
  return true;
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
  ChainArgs a;
  if (!GetChainArgs(env, argv, argc, withTail ? 8 : 7, "chain: bad arguments", &a)) return nullptr;
  bool compare;
  if (napi_get_value_bool(env, argv[6], &compare) != napi_ok) {
    napi_throw_type_error(env, nullptr, "chain: bad arguments");
    return nullptr;
  }
  uint32_t tail = 0;
  if (withTail && (napi_get_value_uint32(env, argv[7], &tail) != napi_ok || tail > 32)) {
    napi_throw_type_error(env, nullptr, "chain: bad tail");
    return nullptr;
  }
  if (!CheckSpans(env, a.offsets, a.offLen, a.count, a.dataLen, tail, "chain: offsets out of range")) return nullptr;
  unsigned char *prefix = a.prefix, *head = a.head, *data = a.data, *out = a.out;
  size_t prefixLen = a.prefixLen;
  uint32_t* offsets = a.offsets;
  uint32_t count = a.count;
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

// A job off the JS thread: its SHA-256 state with the prefix absorbed, and
// references that keep head, data, offsets and out (arguments 1, 2, 3, 5)
// alive until it is done. Throws and returns false if OpenSSL fails.
template <typename Job>
bool SetUpJob(napi_env env, Job* j, const ChainArgs& a, napi_value* argv) {
  if (SHA256_Init(&j->base) != 1 || SHA256_Update(&j->base, a.prefix, a.prefixLen) != 1) {
    napi_throw_error(env, nullptr, "chain: OpenSSL digest failed");
    return false;
  }
  j->head = a.head;
  j->data = a.data;
  j->offsets = a.offsets;
  j->count = a.count;
  j->out = a.out;
  napi_value hold[4] = {argv[1], argv[2], argv[3], argv[5]};
  for (int i = 0; i < 4; i++) napi_create_reference(env, hold[i], 1, &j->refs[i]);
  return true;
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
  ChainArgs a;
  if (!GetChainArgs(env, argv, argc, 7, "chainTailAsync: bad arguments", &a)) return nullptr;
  uint32_t tail;
  if (napi_get_value_uint32(env, argv[6], &tail) != napi_ok || tail < 1 || tail > 32) {
    napi_throw_type_error(env, nullptr, "chainTailAsync: bad tail");
    return nullptr;
  }
  if (!CheckSpans(env, a.offsets, a.offLen, a.count, a.dataLen, tail, "chainTailAsync: offsets out of range")) return nullptr;
  AsyncJob* j = new AsyncJob();
  if (!SetUpJob(env, j, a, argv)) {
    delete j;
    return nullptr;
  }
  j->tail = tail;
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "appendlog.chainTailAsync", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, nullptr, name, AsyncExecute, AsyncComplete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

// chainStart(prefix, head, data, offsets, count, out, firstSeq) -> a job
// handle; chainJoin(job) -> undefined once it is done. Numbers the `count`
// entry encodings of data from firstSeq (the u64 seq at the start of each
// header, docs/FORMAT.md 3.1) and chains them onto head (updated in place),
// writing every hash to out, on a thread of its own: the JS thread stays
// synchronous and goes on meanwhile (logvm append commits the batch before
// while this one is hashed). Join waits for the thread. head, data, offsets
// and out are held referenced until the join (or until the handle is
// collected, which joins first); the caller must not touch them before it.
struct ThreadJob {
  pthread_t thread;
  bool started = false;
  napi_ref refs[4] = {nullptr, nullptr, nullptr, nullptr};
  SHA256_CTX base;
  unsigned char* head = nullptr;
  unsigned char* data = nullptr;
  const uint32_t* offsets = nullptr;
  uint32_t count = 0;
  unsigned char* out = nullptr;
  uint64_t firstSeq = 0;
  bool ok = true;
  bool joined = false;
};

void* ThreadMain(void* p);

void ThreadRun(ThreadJob* j) {
  for (uint32_t i = 0; i < j->count; i++) {
    uint64_t seq = j->firstSeq + i;
    unsigned char* p = j->data + j->offsets[i];
    for (int b = 7; b >= 0; b--) {
      p[b] = static_cast<unsigned char>(seq & 0xff);
      seq >>= 8;
    }
  }
  Run(j->base, j->head, j->data, j->offsets, 0, j->count, j->out, false, 0, &j->ok);
}

void* ThreadMain(void* p) {
  ThreadRun(static_cast<ThreadJob*>(p));
  return nullptr;
}

void JoinJob(napi_env env, ThreadJob* j) {
  if (j->joined) return;
  if (j->started) pthread_join(j->thread, nullptr);
  j->joined = true;
  for (napi_ref& r : j->refs) {
    if (r != nullptr) napi_delete_reference(env, r);
    r = nullptr;
  }
}

void FinalizeJob(napi_env env, void* p, void*) {
  ThreadJob* j = static_cast<ThreadJob*>(p);
  JoinJob(env, j);
  delete j;
}

napi_value ChainStart(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  ChainArgs a;
  if (!GetChainArgs(env, argv, argc, 7, "chainStart: bad arguments", &a)) return nullptr;
  double firstSeq;
  if (napi_get_value_double(env, argv[6], &firstSeq) != napi_ok) {
    napi_throw_type_error(env, nullptr, "chainStart: bad arguments");
    return nullptr;
  }
  // Seqs are exact integers in JS: firstSeq + count - 1 must stay below 2^53.
  if (!(firstSeq >= 1) || firstSeq != static_cast<double>(static_cast<uint64_t>(firstSeq)) || firstSeq + a.count > 9007199254740992.0) {
    napi_throw_range_error(env, nullptr, "chainStart: bad firstSeq");
    return nullptr;
  }
  // Each span holds at least a whole header (26 bytes), whose seq is written.
  if (!CheckSpans(env, a.offsets, a.offLen, a.count, a.dataLen, 26, "chainStart: offsets out of range")) return nullptr;
  ThreadJob* j = new ThreadJob();
  if (!SetUpJob(env, j, a, argv)) {
    delete j;
    return nullptr;
  }
  j->firstSeq = static_cast<uint64_t>(firstSeq);
  napi_value handle;
  if (napi_create_external(env, j, FinalizeJob, nullptr, &handle) != napi_ok) {
    for (napi_ref r : j->refs)
      if (r != nullptr) napi_delete_reference(env, r);
    delete j;
    napi_throw_error(env, nullptr, "chainStart: cannot create the job");
    return nullptr;
  }
  // No thread to be had: the same work, here and now.
  j->started = pthread_create(&j->thread, nullptr, ThreadMain, j) == 0;
  if (!j->started) ThreadRun(j);
  return handle;
}

napi_value ChainJoin(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  napi_valuetype t;
  void* p = nullptr;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external || napi_get_value_external(env, argv[0], &p) != napi_ok ||
      p == nullptr) {
    napi_throw_type_error(env, nullptr, "chainJoin: not a job");
    return nullptr;
  }
  ThreadJob* j = static_cast<ThreadJob*>(p);
  JoinJob(env, j);
  if (!j->ok) {
    napi_throw_error(env, nullptr, "chain: OpenSSL digest failed");
    return nullptr;
  }
  return nullptr;
}

// addLines(src, pos, buf, used, offsets, n, maxLine, time, session, kind, res)
// appends to a batch being built (BlockBuilder, docs/FORMAT.md 3.1) one
// entry per whole line of src from pos on: each line ends in '\n' (not
// stored) and holds at most maxLine bytes, and gets the header seq 0, time,
// session, kind, flags 0, its length, then its bytes. It stops before the
// first line that is not whole, is longer than maxLine, or does not fit in
// buf (or offsets): the caller's scanner takes that one. res (a Float64Array
// of 6) receives the position reached, the new used and n, the lines and
// line bytes added, and 1 if it stopped for room, else 0. JS does the same
// (LineScanner.push with emit) without the addon; tests check both agree.
napi_value AddLines(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  unsigned char *src, *buf;
  size_t srcLen, bufLen, offLen, resLen;
  uint32_t *offsets, pos, used, n, maxLine, session, kind;
  double time, *res;
  if (argc < 11 || !GetBytes(env, argv[0], &src, &srcLen) || napi_get_value_uint32(env, argv[1], &pos) != napi_ok ||
      !GetBytes(env, argv[2], &buf, &bufLen) || napi_get_value_uint32(env, argv[3], &used) != napi_ok ||
      !GetU32(env, argv[4], &offsets, &offLen) || napi_get_value_uint32(env, argv[5], &n) != napi_ok ||
      napi_get_value_uint32(env, argv[6], &maxLine) != napi_ok || napi_get_value_double(env, argv[7], &time) != napi_ok ||
      napi_get_value_uint32(env, argv[8], &session) != napi_ok || napi_get_value_uint32(env, argv[9], &kind) != napi_ok ||
      !GetArray(env, argv[10], napi_float64_array, &res, &resLen) || resLen < 6) {
    napi_throw_type_error(env, nullptr, "addLines: bad arguments");
    return nullptr;
  }
  if (pos > srcLen || used > bufLen || n > offLen || kind > 255 || !(time >= 0) || time > 9007199254740991.0 ||
      time != static_cast<double>(static_cast<uint64_t>(time))) {
    napi_throw_range_error(env, nullptr, "addLines: arguments out of range");
    return nullptr;
  }
  unsigned char header[26] = {0};
  uint64_t t = static_cast<uint64_t>(time);
  for (int b = 15; b >= 8; b--) {
    header[b] = static_cast<unsigned char>(t & 0xff);
    t >>= 8;
  }
  header[16] = static_cast<unsigned char>(session >> 24);
  header[17] = static_cast<unsigned char>(session >> 16);
  header[18] = static_cast<unsigned char>(session >> 8);
  header[19] = static_cast<unsigned char>(session);
  header[20] = static_cast<unsigned char>(kind);
  size_t p = pos, u = used, k = n;
  double lines = 0, bytes = 0;
  int room = 0;
  while (p < srcLen) {
    const void* found = memchr(src + p, '\n', srcLen - p);
    if (found == nullptr) break;
    size_t len = static_cast<const unsigned char*>(found) - (src + p);
    if (len > maxLine) break;
    if (bufLen - u < 26 + len || offLen - k < 2) {
      room = 1;
      break;
    }
    offsets[k++] = static_cast<uint32_t>(u);
    memcpy(buf + u, header, 22);
    buf[u + 22] = static_cast<unsigned char>(len >> 24);
    buf[u + 23] = static_cast<unsigned char>(len >> 16);
    buf[u + 24] = static_cast<unsigned char>(len >> 8);
    buf[u + 25] = static_cast<unsigned char>(len);
    memcpy(buf + u + 26, src + p, len);
    u += 26 + len;
    lines += 1;
    bytes += static_cast<double>(len);
    p += len + 1;
  }
  res[0] = static_cast<double>(p);
  res[1] = static_cast<double>(u);
  res[2] = static_cast<double>(k);
  res[3] = lines;
  res[4] = bytes;
  res[5] = room;
  return nullptr;
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
  napi_create_function(env, "chainStart", NAPI_AUTO_LENGTH, ChainStart, nullptr, &fn);
  napi_set_named_property(env, exports, "chainStart", fn);
  napi_create_function(env, "chainJoin", NAPI_AUTO_LENGTH, ChainJoin, nullptr, &fn);
  napi_set_named_property(env, exports, "chainJoin", fn);
  napi_create_function(env, "addLines", NAPI_AUTO_LENGTH, AddLines, nullptr, &fn);
  napi_set_named_property(env, exports, "addLines", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
