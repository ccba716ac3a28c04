//! A contiguous CPU tensor's elements borrowed as a Rust slice, for the
//! hand-written host kernels (the PCA's products, the network's host blocks).

use tch::{kind::Element, Device, Tensor};

fn on_host<T: Element>(t: &Tensor) -> bool {
    t.kind() == T::KIND && t.device() == Device::Cpu && t.is_contiguous()
}

/// The elements of `t`, or None unless it is a contiguous CPU tensor of T's kind.
pub(crate) fn host_slice<T: Element>(t: &Tensor) -> Option<&[T]> {
    if !on_host::<T>(t) {
        return None;
    }
    let n = t.numel();
    if n == 0 {
        return Some(&[]);
    }
    // SAFETY: checked above: `n` contiguous elements of type T on the host,
    // alive (and only read through this slice) while `t` is borrowed.
    Some(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, n) })
}

/// Like [`host_slice`], writable. Callers pass tensors whose storage no
/// other live tensor shares (fresh ones), so the exclusive borrow of `t`
/// is the only access for the slice's lifetime.
pub(crate) fn host_slice_mut<T: Element>(t: &mut Tensor) -> Option<&mut [T]> {
    if !on_host::<T>(t) {
        return None;
    }
    let n = t.numel();
    if n == 0 {
        return Some(&mut []);
    }
    // SAFETY: as in `host_slice`, with the exclusivity stated above.
    Some(unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, n) })
}
