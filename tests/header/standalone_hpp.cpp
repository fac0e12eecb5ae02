// dist_worker.hpp compiles alone as C++17 and C++20 (-Wall -Wextra -pedantic
// -Werror), its templates instantiated with every kind of callable.
#include "dist_worker.hpp"

#include <functional>

int dist_worker_header_probe_hpp(dist::Worker &w);

int dist_worker_header_probe_hpp(dist::Worker &w)
{
    int state = 0;
    std::function<void(const dist::Call &)> f = [](const dist::Call &) {};
    w.add_thread(dist::Sub, [&state](const dist::Call &c) { return state += static_cast<int>(c.callable()); });
    w.add_thread(dist::Sub, f);
    (void)w.try_spawn_with_init(dist::NextLevel, [] {}, [](const dist::Call &) { return 0; });
    w.add_level(dist::Worker(), [](dist::WorkerRef inner, const dist::Call &c) {
        auto s = inner.scope();
        inner.dispatch(dist::Task(dist::Sub, c.callable()).scalars(c.scalars()).config(c.config()));
    });
    (void)w.try_spawn_level(
        dist::Options().level(2), [](dist::Registrar &r) { r.spawn(dist::Sub, [](const dist::Call &) {}); },
        [](dist::WorkerRef, const dist::Call &) { return 0; });
    const DistTensor t = w.alloc({2, 3}, dist::DType::Float32);
    dist::Future fut = w.dispatch(dist::Task(dist::Sub, 1).input(t).scalar_bits(1.5).scalar(&state));
    const bool done = fut.wait_for(std::chrono::milliseconds(5));
    return static_cast<int>(done) + static_cast<int>(dist::version().size());
}
