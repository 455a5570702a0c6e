//! One portable loop, compiled three times: for AVX-512 (F and BW), for AVX2, and for the
//! x86-64 (or other) baseline, the widest picked at run time. Our elementwise kernels are
//! written as plain loops that LLVM vectorizes; what they need from us is only the target
//! features, and this macro is the one place that spells out the detection and the `unsafe`.

/// `multiversion! { /// docs  pub(crate) fn name<T: Bound>(args) -> R { body } }` defines
/// `name` (generic parameters optional, one bound each; arguments plain names) whose body is
/// compiled three times and the best build for this CPU called. The results are the same on
/// every path: the loops do integer or IEEE arithmetic in a fixed order, which the vector
/// width does not change (and Rust never contracts a multiply and an add into an FMA).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $(<$($g:ident: $bound:path),+>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                fn avx512 $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? {
                    portable $(::<$($g),+>)? ($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2 $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? {
                    portable $(::<$($g),+>)? ($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: AVX-512 F and BW are present, checked on the line above.
                    return unsafe { avx512 $(::<$($g),+>)? ($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is present, checked on the line above.
                    return unsafe { avx2 $(::<$($g),+>)? ($($arg),*) };
                }
            }
            portable $(::<$($g),+>)? ($($arg),*)
        }
    };
}

pub(crate) use multiversion;
