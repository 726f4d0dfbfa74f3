// cuBLAS loaded on first use (see cublas_api.h for why).
#include "kernels/cuda/cublas_api.h"

#include "runtime/core/status.h"

#if !FOT_CUDA_EMU_BUILD
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#endif

namespace fot::kernels::cuda {

#if FOT_CUDA_EMU_BUILD

const CublasApi& cublas_api() {
    static const CublasApi api{
        &cublasCreate,       &cublasDestroy,         &cublasSetStream, &cublasSetMathMode,
        &cublasSetWorkspace, &cublasGetStatusString, &cublasGemmEx,    &cublasGemmStridedBatchedEx};
    return api;
}

CublasApi load_cublas_api(const std::string& library) {
    FOT_THROW("load_cublas_api(", library, "): the CUDA emulator has no cuBLAS library to load");
}

std::string cublas_library_name() {
    return "libcublas (emulated)";
}

#else

namespace {

// Two steps so that cublas_v2.h's macros (cublasCreate -> cublasCreate_v2) expand first: the
// library exports the expanded names.
#define FOT_CUBLAS_NAME_(sym) #sym
#define FOT_CUBLAS_NAME(sym) FOT_CUBLAS_NAME_(sym)

template <typename Fn>
void resolve(void* lib, const std::string& library, const char* name, Fn& fn) {
    dlerror();
    void* p = dlsym(lib, name);
    if (p == nullptr) {
        FOT_THROW("cuBLAS: ", library, " has no ", name, " (fotrt needs the cuBLAS of CUDA ",
                  CUBLAS_VER_MAJOR, "; point LD_LIBRARY_PATH at that toolkit's lib64)");
    }
    fn = reinterpret_cast<Fn>(p);
}

// Where libcudart came from: the toolkit's cuBLAS normally sits next to it.
std::string cudart_directory() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&cudaGetDeviceCount), &info) == 0 || !info.dli_fname)
        return "";
    const std::string path = info.dli_fname;
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

[[noreturn]] void cannot_load(const std::string& library, const char* why) {
    FOT_THROW("cuBLAS is needed by --backend cuda but ", library, " cannot be loaded (",
              why ? why : "unknown reason", "): install the CUDA ", CUBLAS_VER_MAJOR,
              " toolkit's cuBLAS or add its lib64 directory to LD_LIBRARY_PATH");
}

CublasApi table_from(void* lib, const std::string& library) {
    CublasApi api{};
    resolve(lib, library, FOT_CUBLAS_NAME(cublasCreate), api.create);
    resolve(lib, library, FOT_CUBLAS_NAME(cublasDestroy), api.destroy);
    resolve(lib, library, FOT_CUBLAS_NAME(cublasSetStream), api.set_stream);
    resolve(lib, library, FOT_CUBLAS_NAME(cublasSetMathMode), api.set_math_mode);
    resolve(lib, library, FOT_CUBLAS_NAME(cublasSetWorkspace), api.set_workspace);
    resolve(lib, library, FOT_CUBLAS_NAME(cublasGetStatusString), api.status_string);
    resolve(lib, library, FOT_CUBLAS_NAME(cublasGemmEx), api.gemm_ex);
    resolve(lib, library, FOT_CUBLAS_NAME(cublasGemmStridedBatchedEx), api.gemm_strided_batched_ex);
    return api;
}

}  // namespace

std::string cublas_library_name() {
    return "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
}

// RTLD_LOCAL: nothing else in the process resolves against cuBLAS's symbols.
CublasApi load_cublas_api(const std::string& library) {
    void* lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) cannot_load(library, dlerror());
    try {
        return table_from(lib, library);
    } catch (...) {
        dlclose(lib);
        throw;
    }
}

const CublasApi& cublas_api() {
    static const CublasApi api = [] {
        const std::string name = cublas_library_name();
        // The usual search first; then next to libcudart, for a toolkit outside the search.
        void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (lib == nullptr) {
            const std::string why = dlerror();
            const std::string beside = cudart_directory() + name;
            if (beside != name) lib = dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (lib == nullptr) cannot_load(name, why.c_str());
        }
        return table_from(lib, name);
    }();
    return api;
}

#endif

}  // namespace fot::kernels::cuda
