// NcclCommunicator on real GPUs (label gpu; built when NCCL is). Buffers are staged through
// host vectors so the expectations read like the host conformance suite. Skips on every rank
// alike when the node has no GPU or fewer GPUs than ranks.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "parallel/mpi_session.h"
#include "parallel/nccl_communicator.h"
#include "parallel/world.h"

namespace fot::parallel {
namespace {

template <typename T>
class DeviceVector {
  public:
    explicit DeviceVector(const std::vector<T>& host) : n_(host.size()) {
        EXPECT_EQ(cudaMalloc(&ptr_, std::max<size_t>(1, n_) * sizeof(T)), cudaSuccess);
        if (n_) {
            EXPECT_EQ(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice),
                      cudaSuccess);
        }
    }
    ~DeviceVector() { cudaFree(ptr_); }
    TensorView view(DType dtype, int device) const {
        return TensorView{ptr_, dtype, {static_cast<int64_t>(n_)}, Device::cuda(device)};
    }
    std::vector<T> host() const {
        cudaDeviceSynchronize();
        std::vector<T> out(n_);
        if (n_) cudaMemcpy(out.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
        return out;
    }

  private:
    size_t n_;
    void* ptr_ = nullptr;
};

class NcclCommunicatorTest : public ::testing::Test {
  protected:
    void SetUp() override {
        boot_ = make_mpi_world_communicator();
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
        if (count < boot_->size()) {
            GTEST_SKIP() << "needs one GPU per rank: " << count << " GPU(s), " << boot_->size()
                         << " rank(s)";
        }
        device_ = select_cuda_device(node_info(), count, boot_->size() > 1).device;
        cudaSetDevice(device_);
        comm_ = make_nccl_communicator(*boot_, device_);
        comm_->set_timeout(60);
    }
    std::unique_ptr<Communicator> boot_;
    std::unique_ptr<Communicator> comm_;
    int device_ = 0;
};

TEST_F(NcclCommunicatorTest, AllReduceAllGatherBroadcastBarrier) {
    const int p = comm_->size(), me = comm_->rank();
    EXPECT_EQ(comm_->device(), Device::cuda(device_));
    std::vector<float> x(1000);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.5f * (me + 1) + static_cast<float>(i);
    DeviceVector<float> dx(x);
    comm_->all_reduce_sum(dx.view(DType::kF32, device_));
    auto sum = dx.host();
    for (size_t i = 0; i < x.size(); ++i)
        EXPECT_FLOAT_EQ(sum[i], 0.25f * p * (p + 1) + static_cast<float>(p * i)) << i;

    DeviceVector<int32_t> mx(std::vector<int32_t>{me, -me});
    comm_->all_reduce_max(mx.view(DType::kI32, device_));
    EXPECT_EQ(mx.host(), (std::vector<int32_t>{p - 1, 0}));

    DeviceVector<int64_t> in(std::vector<int64_t>{me, int64_t{me} << 40});
    DeviceVector<int64_t> out(std::vector<int64_t>(2 * p, -1));
    comm_->all_gather(in.view(DType::kI64, device_), out.view(DType::kI64, device_));
    auto g = out.host();
    for (int r = 0; r < p; ++r) {
        EXPECT_EQ(g[2 * r], r);
        EXPECT_EQ(g[2 * r + 1], int64_t{r} << 40);
    }

    DeviceVector<uint8_t> b(std::vector<uint8_t>(5, static_cast<uint8_t>(me == p - 1 ? 9 : 1)));
    comm_->broadcast(b.view(DType::kU8, device_), p - 1);
    EXPECT_EQ(b.host(), std::vector<uint8_t>(5, 9));
    comm_->barrier();

    std::vector<float> host(3);
    EXPECT_THROW(comm_->all_reduce_sum(host_view(host.data(), 3)), Error);  // host buffer
    std::string s;
    EXPECT_THROW(comm_->broadcast_string(s, 0), Error);
}

TEST_F(NcclCommunicatorTest, SendRecvAndSplit) {
    const int p = comm_->size(), me = comm_->rank();
    if (p >= 2) {
        const int next = (me + 1) % p, prev = (me + p - 1) % p;
        DeviceVector<int32_t> out(std::vector<int32_t>(7, me)), in(std::vector<int32_t>(7, -1));
        if (me % 2 == 0) {
            comm_->send(out.view(DType::kI32, device_), next);
            comm_->recv(in.view(DType::kI32, device_), prev);
        } else {
            comm_->recv(in.view(DType::kI32, device_), prev);
            comm_->send(out.view(DType::kI32, device_), next);
        }
        EXPECT_EQ(in.host(), std::vector<int32_t>(7, prev));
    }
    auto child = comm_->split(me % 2, me);
    ASSERT_NE(child, nullptr);
    EXPECT_EQ(child->size(), (p - me % 2 + 1) / 2);
    EXPECT_EQ(child->rank(), me / 2);
    DeviceVector<int32_t> one(std::vector<int32_t>{1});
    child->all_reduce_sum(one.view(DType::kI32, device_));
    EXPECT_EQ(one.host(), std::vector<int32_t>{child->size()});
    auto none = comm_->split(-1, 0);
    EXPECT_EQ(none, nullptr);
}

}  // namespace
}  // namespace fot::parallel
