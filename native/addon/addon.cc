// The Node side of the translation core (ts/addon.ts), one part per job,
// each registering its own exports. Every part is libc's caller, never the
// shim's: the harness runs outside it.
#include <napi.h>

namespace addon {

// The C table layouts, for the golden test only (schema_vectors.cc):
// fwdKey fwdVal fwdValRemoved procKey procVal revKey revVal allocKey appVal
// pathKey pathVal portId aidValid.
void RegisterSchemaVectors(Napi::Env env, Napi::Object exports);
// The tables' files before LMDB opens them (storage.cc):
// checkTables reserveTables unreserveTables checkLock.
void RegisterStorage(Napi::Env env, Napi::Object exports);
// The home's inflight record around the harness's own creations
// (inflight.cc): recoverInflight ipcCreate inflightClear; and its journal of new objects:
// journalUsed recoverJournal foldJournalBegin foldJournalEnd.
void RegisterInflight(Napi::Env env, Napi::Object exports);
// SysV objects by system ID (sysv.cc): ipcStat ipcSetPerm ipcRemove
// semGetAll semSetAll msgCopyAll msgSendAll shmAttachments.
void RegisterSysv(Napi::Env env, Napi::Object exports);
// The snapshot file's checksums and segment streaming (snapshot.cc):
// crc32c shmToFd fdToShm seek.
void RegisterSnapshot(Napi::Env env, Napi::Object exports);
// Single kernel calls Node lacks (posix.cc): flock peerCred portFree.
void RegisterPosix(Napi::Env env, Napi::Object exports);
// The first rows of the translations for `appshot tables` (firstpage.cc): firstRows.
void RegisterFirstPage(Napi::Env env, Napi::Object exports);

} // namespace addon

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports)
{
	addon::RegisterSchemaVectors(env, exports);
	addon::RegisterStorage(env, exports);
	addon::RegisterInflight(env, exports);
	addon::RegisterSysv(env, exports);
	addon::RegisterSnapshot(env, exports);
	addon::RegisterPosix(env, exports);
	addon::RegisterFirstPage(env, exports);
	return exports;
}

} // namespace

NODE_API_MODULE(appshot, Init)
