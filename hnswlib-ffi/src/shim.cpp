// A C ABI over hnswlib's `HierarchicalNSW<float>` for `edgewise-hnswlib`.
//
// * No C++ exception crosses the boundary: every entry point that can throw
//   catches, copies the message into the caller's buffer and returns an error.
// * The distance function comes from Rust (runtime-dispatched SIMD), through a
//   `SpaceInterface` whose parameter block is the dimension, as hnswlib's own
//   spaces do.
// * Snapshots: `ew_hnsw_save` writes hnswlib's own index format (the same bytes
//   as `saveIndex`) through a callback, and `ew_hnsw_load` reads it from memory
//   and validates every count and neighbour id before the graph is searchable,
//   which hnswlib's `loadIndex` does not.

#include "hnswlib/hnswlib.h"

#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

extern "C" {
typedef float (*ew_dist_fn)(const void *, const void *, const void *);
typedef bool (*ew_filter_fn)(size_t label, void *ctx);
typedef void (*ew_write_fn)(const char *bytes, size_t len, void *ctx);
}

namespace {

using Graph = hnswlib::HierarchicalNSW<float>;

class RustSpace final : public hnswlib::SpaceInterface<float> {
 public:
    RustSpace(size_t dim, ew_dist_fn f) : dim_(dim), f_(f) {}
    size_t get_data_size() override { return dim_ * sizeof(float); }
    hnswlib::DISTFUNC<float> get_dist_func() override { return f_; }
    void *get_dist_func_param() override { return &dim_; }

 private:
    size_t dim_;
    ew_dist_fn f_;
};

class CallbackFilter final : public hnswlib::BaseFilterFunctor {
 public:
    CallbackFilter(ew_filter_fn f, void *ctx) : f_(f), ctx_(ctx) {}
    bool operator()(hnswlib::labeltype id) override { return f_(id, ctx_); }

 private:
    ew_filter_fn f_;
    void *ctx_;
};

// The space must outlive the graph, which keeps a pointer to its parameter block.
struct Index {
    RustSpace space;
    Graph graph;

    Index(size_t dim, ew_dist_fn f, size_t max_elements, size_t m, size_t ef_construction, size_t seed)
        : space(dim, f), graph(&space, max_elements, m, ef_construction, seed) {}
    Index(size_t dim, ew_dist_fn f) : space(dim, f), graph(&space) {}
};

void set_error(char *err, size_t err_len, const char *msg) {
    if (err == nullptr || err_len == 0) return;
    std::strncpy(err, msg, err_len - 1);
    err[err_len - 1] = '\0';
}

template <typename F>
int guarded(char *err, size_t err_len, F &&f) {
    try {
        f();
        return 0;
    } catch (const std::bad_alloc &) {
        set_error(err, err_len, "out of memory");
    } catch (const std::exception &e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown C++ exception");
    }
    return 1;
}

// Bounded reads from the snapshot buffer.
class Reader {
 public:
    Reader(const char *p, size_t n) : p_(p), left_(n) {}
    template <typename T>
    T pod(const char *what) {
        T v;
        take(reinterpret_cast<char *>(&v), sizeof(T), what);
        return v;
    }
    void take(char *dst, size_t n, const char *what) {
        if (n > left_) throw std::runtime_error(std::string("snapshot ends inside ") + what);
        std::memcpy(dst, p_, n);
        p_ += n;
        left_ -= n;
    }
    size_t left() const { return left_; }

 private:
    const char *p_;
    size_t left_;
};

// Checks one adjacency list: its count within `cap` and every id below `n`.
void check_list(const hnswlib::linklistsizeint *ll, size_t cap, size_t n, const char *what) {
    size_t count = *reinterpret_cast<const unsigned short *>(ll);
    if (count > cap) throw std::runtime_error(std::string(what) + " has more neighbours than the graph degree");
    const hnswlib::tableint *ids = reinterpret_cast<const hnswlib::tableint *>(ll + 1);
    for (size_t j = 0; j < count; j++)
        if (ids[j] >= n) throw std::runtime_error(std::string(what) + " names a node that does not exist");
}

// Reads hnswlib's index format (`saveIndex`) into `g`, which was made with the
// one-argument constructor, and validates it.
void load_graph(Graph &g, RustSpace &space, const char *bytes, size_t len) {
    Reader r(bytes, len);
    g.offsetLevel0_ = r.pod<size_t>("the header");
    size_t max_elements = r.pod<size_t>("the header");
    size_t count = r.pod<size_t>("the header");
    g.size_data_per_element_ = r.pod<size_t>("the header");
    g.label_offset_ = r.pod<size_t>("the header");
    g.offsetData_ = r.pod<size_t>("the header");
    g.maxlevel_ = r.pod<int>("the header");
    g.enterpoint_node_ = r.pod<hnswlib::tableint>("the header");
    g.maxM_ = r.pod<size_t>("the header");
    g.maxM0_ = r.pod<size_t>("the header");
    g.M_ = r.pod<size_t>("the header");
    g.mult_ = r.pod<double>("the header");
    g.ef_construction_ = r.pod<size_t>("the header");

    g.data_size_ = space.get_data_size();
    g.fstdistfunc_ = space.get_dist_func();
    g.dist_func_param_ = space.get_dist_func_param();
    g.size_links_per_element_ = g.maxM_ * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
    g.size_links_level0_ = g.maxM0_ * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);

    if (g.M_ == 0 || g.M_ > 10000 || g.maxM_ != g.M_ || g.maxM0_ != 2 * g.M_)
        throw std::runtime_error("the graph degree in the snapshot is not one hnswlib builds");
    if (g.offsetLevel0_ != 0 || g.offsetData_ != g.size_links_level0_ ||
        g.label_offset_ != g.size_links_level0_ + g.data_size_ ||
        g.size_data_per_element_ != g.label_offset_ + sizeof(hnswlib::labeltype))
        throw std::runtime_error("the snapshot's element layout does not match this dimension");
    if (count > max_elements || count > UINT32_MAX)
        throw std::runtime_error("the snapshot's element count is out of range");
    if (count > r.left() / g.size_data_per_element_)
        throw std::runtime_error("snapshot ends inside the base layer");
    if (count == 0 ? g.maxlevel_ != -1 : (g.enterpoint_node_ >= count || g.maxlevel_ < 0))
        throw std::runtime_error("the snapshot's entry point is out of range");
    if (!(g.mult_ > 0.0)) throw std::runtime_error("the snapshot's level multiplier is invalid");

    if (max_elements == 0) max_elements = 1;
    g.max_elements_ = max_elements;
    g.data_level0_memory_ = static_cast<char *>(std::malloc(max_elements * g.size_data_per_element_));
    if (g.data_level0_memory_ == nullptr) throw std::bad_alloc();
    g.linkLists_ = static_cast<char **>(std::calloc(max_elements, sizeof(void *)));
    if (g.linkLists_ == nullptr) throw std::bad_alloc();
    g.element_levels_ = std::vector<int>(max_elements);
    std::vector<std::mutex>(max_elements).swap(g.link_list_locks_);
    std::vector<std::mutex>(Graph::MAX_LABEL_OPERATION_LOCKS).swap(g.label_op_locks_);
    g.visited_list_pool_.reset(new hnswlib::VisitedListPool(1, max_elements));
    g.revSize_ = 1.0 / g.mult_;
    g.ef_ = 10;
    g.num_deleted_ = 0;
    // Only now: on an error the graph's destructor frees `count` elements' lists.
    g.cur_element_count = count;

    r.take(g.data_level0_memory_, count * g.size_data_per_element_, "the base layer");
    for (size_t i = 0; i < count; i++) {
        unsigned int bytes_here = r.pod<unsigned int>("the upper layers");
        if (bytes_here % g.size_links_per_element_ != 0)
            throw std::runtime_error("an upper-layer list has a size hnswlib never writes");
        size_t levels = bytes_here / g.size_links_per_element_;
        if (levels > static_cast<size_t>(g.maxlevel_))
            throw std::runtime_error("a node sits above the graph's top level");
        g.element_levels_[i] = static_cast<int>(levels);
        if (levels > 0) {
            g.linkLists_[i] = static_cast<char *>(std::malloc(bytes_here));
            if (g.linkLists_[i] == nullptr) throw std::bad_alloc();
            r.take(g.linkLists_[i], bytes_here, "the upper layers");
        }
    }
    if (r.left() != 0) throw std::runtime_error("the snapshot has bytes after the graph");
    if (count > 0 && g.element_levels_[g.enterpoint_node_] != g.maxlevel_)
        throw std::runtime_error("the snapshot's entry point is not on the top level");

    for (size_t i = 0; i < count; i++) {
        auto id = static_cast<hnswlib::tableint>(i);
        check_list(g.get_linklist0(id), g.maxM0_, count, "a base-layer list");
        for (int level = 1; level <= g.element_levels_[i]; level++)
            check_list(g.get_linklist(id, level), g.maxM_, count, "an upper-layer list");
        hnswlib::labeltype label = g.getExternalLabel(id);
        if (!g.label_lookup_.emplace(label, id).second)
            throw std::runtime_error("the snapshot holds one label twice");
        if (g.isMarkedDeleted(id)) g.num_deleted_ += 1;
    }
}

template <typename T>
void write_pod(ew_write_fn w, void *ctx, const T &v) {
    w(reinterpret_cast<const char *>(&v), sizeof(T), ctx);
}

}  // namespace

extern "C" {

void *ew_hnsw_new(size_t dim, ew_dist_fn f, size_t max_elements, size_t m, size_t ef_construction, size_t seed,
                  char *err, size_t err_len) {
    Index *out = nullptr;
    guarded(err, err_len, [&] {
        if (dim == 0) throw std::runtime_error("the dimension must be at least 1");
        if (m < 2) throw std::runtime_error("M must be at least 2");
        out = new Index(dim, f, max_elements == 0 ? 1 : max_elements, m, ef_construction, seed);
    });
    return out;
}

void *ew_hnsw_load(size_t dim, ew_dist_fn f, const char *bytes, size_t len, char *err, size_t err_len) {
    Index *out = nullptr;
    guarded(err, err_len, [&] {
        std::unique_ptr<Index> idx(new Index(dim, f));
        load_graph(idx->graph, idx->space, bytes, len);
        out = idx.release();
    });
    return out;
}

void ew_hnsw_free(void *p) { delete static_cast<Index *>(p); }

int ew_hnsw_add(void *p, const float *v, size_t label, char *err, size_t err_len) {
    return guarded(err, err_len, [&] { static_cast<Index *>(p)->graph.addPoint(v, label); });
}

int ew_hnsw_mark_deleted(void *p, size_t label, char *err, size_t err_len) {
    return guarded(err, err_len, [&] { static_cast<Index *>(p)->graph.markDelete(label); });
}

int ew_hnsw_resize(void *p, size_t max_elements, char *err, size_t err_len) {
    return guarded(err, err_len, [&] { static_cast<Index *>(p)->graph.resizeIndex(max_elements); });
}

void ew_hnsw_set_ef(void *p, size_t ef) { static_cast<Index *>(p)->graph.setEf(ef); }

size_t ew_hnsw_capacity(const void *p) { return static_cast<const Index *>(p)->graph.max_elements_; }
size_t ew_hnsw_count(const void *p) { return static_cast<const Index *>(p)->graph.cur_element_count; }
size_t ew_hnsw_deleted(const void *p) { return static_cast<const Index *>(p)->graph.num_deleted_; }
size_t ew_hnsw_connectivity(const void *p) { return static_cast<const Index *>(p)->graph.M_; }

// The best `k` (closest first) into `labels`/`distances`; `*found` is how many.
int ew_hnsw_search(const void *p, const float *q, size_t k, ew_filter_fn filter, void *filter_ctx, size_t *labels,
                   float *distances, size_t *found, char *err, size_t err_len) {
    *found = 0;
    return guarded(err, err_len, [&] {
        const Graph &g = static_cast<const Index *>(p)->graph;
        CallbackFilter f(filter, filter_ctx);
        auto top = g.searchKnn(q, k, filter == nullptr ? nullptr : &f);
        size_t n = top.size();
        // The queue pops the farthest first.
        for (size_t i = n; i > 0; i--) {
            labels[i - 1] = top.top().second;
            distances[i - 1] = top.top().first;
            top.pop();
        }
        *found = n;
    });
}

// hnswlib's index format, the same bytes as `saveIndex`, through `w`.
int ew_hnsw_save(const void *p, ew_write_fn w, void *ctx, char *err, size_t err_len) {
    return guarded(err, err_len, [&] {
        const Graph &g = static_cast<const Index *>(p)->graph;
        size_t count = g.cur_element_count;
        write_pod(w, ctx, g.offsetLevel0_);
        write_pod(w, ctx, g.max_elements_);
        write_pod(w, ctx, count);
        write_pod(w, ctx, g.size_data_per_element_);
        write_pod(w, ctx, g.label_offset_);
        write_pod(w, ctx, g.offsetData_);
        write_pod(w, ctx, g.maxlevel_);
        write_pod(w, ctx, g.enterpoint_node_);
        write_pod(w, ctx, g.maxM_);
        write_pod(w, ctx, g.maxM0_);
        write_pod(w, ctx, g.M_);
        write_pod(w, ctx, g.mult_);
        write_pod(w, ctx, g.ef_construction_);
        w(g.data_level0_memory_, count * g.size_data_per_element_, ctx);
        for (size_t i = 0; i < count; i++) {
            unsigned int bytes_here =
                g.element_levels_[i] > 0 ? g.size_links_per_element_ * g.element_levels_[i] : 0;
            write_pod(w, ctx, bytes_here);
            if (bytes_here) w(g.linkLists_[i], bytes_here, ctx);
        }
    });
}

}  // extern "C"
