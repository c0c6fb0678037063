//! The finite field GF(2^16) used by SPQR's erasure code.
//!
//! Elements are polynomials over GF(2) of degree below 16, stored as a `u16` whose bit `i` is the
//! coefficient of `x^i`, taken modulo `x^16 + x^12 + x^3 + x + 1` (`0x1100B`), the polynomial
//! spqr uses. Addition and subtraction are both XOR. Multiplication goes through logarithm and
//! antilogarithm tables for the generator `x` (the modulus is primitive, so the powers of `x` run
//! through all 65 535 non-zero elements); the tables are built once, on first use.

use std::ops::{Add, Div, Mul, Sub};
use std::sync::OnceLock;

/// The reduction polynomial `x^16 + x^12 + x^3 + x + 1`, bit 16 included.
pub const MODULUS: u32 = 0x1_100B;

/// Number of non-zero elements, which is also the multiplicative order of the generator.
const GROUP_ORDER: usize = 0xFFFF;

/// One element of GF(2^16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Gf16(pub u16);

impl Gf16 {
    /// The additive identity.
    pub const ZERO: Gf16 = Gf16(0);
    /// The multiplicative identity.
    pub const ONE: Gf16 = Gf16(1);

    /// Multiplies by `x`: a left shift, folding bit 16 back in with the modulus.
    pub const fn times_x(self) -> Gf16 {
        let wide = (self.0 as u32) << 1;
        if wide & 0x1_0000 != 0 {
            Gf16((wide ^ MODULUS) as u16)
        } else {
            Gf16(wide as u16)
        }
    }

    /// The multiplicative inverse. Zero has none; by convention this returns zero for it, so that
    /// a degenerate input yields a wrong value instead of a panic. Callers never invert zero.
    pub fn inverse(self) -> Gf16 {
        if self.0 == 0 {
            return Gf16::ZERO;
        }
        let t = tables();
        let log = usize::from(t.log[usize::from(self.0)]);
        // x^(order - log) * x^log = x^order = 1; for log == 0 this lands on exp[order] == 1.
        Gf16(t.exp[GROUP_ORDER - log])
    }
}

struct Tables {
    /// `exp[i] = x^i`, for `i` in `0..2 * GROUP_ORDER` (doubled so that a sum of two logs needs
    /// no reduction modulo the order).
    exp: Box<[u16]>,
    /// `log[a]` with `x^log[a] = a`, for non-zero `a`; `log[0]` is unused.
    log: Box<[u16]>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut exp = vec![0u16; 2 * GROUP_ORDER].into_boxed_slice();
        let mut log = vec![0u16; 1 << 16].into_boxed_slice();
        let mut power = Gf16::ONE;
        for i in 0..GROUP_ORDER {
            exp[i] = power.0;
            exp[i + GROUP_ORDER] = power.0;
            // i < 0xFFFF, so it fits.
            log[usize::from(power.0)] = i as u16;
            power = power.times_x();
        }
        Tables { exp, log }
    })
}

impl Add for Gf16 {
    type Output = Gf16;
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn add(self, rhs: Gf16) -> Gf16 {
        Gf16(self.0 ^ rhs.0)
    }
}

impl Sub for Gf16 {
    type Output = Gf16;
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn sub(self, rhs: Gf16) -> Gf16 {
        Gf16(self.0 ^ rhs.0)
    }
}

impl Mul for Gf16 {
    type Output = Gf16;
    fn mul(self, rhs: Gf16) -> Gf16 {
        if self.0 == 0 || rhs.0 == 0 {
            return Gf16::ZERO;
        }
        let t = tables();
        let sum = usize::from(t.log[usize::from(self.0)]) + usize::from(t.log[usize::from(rhs.0)]);
        Gf16(t.exp[sum])
    }
}

impl Div for Gf16 {
    type Output = Gf16;
    /// `self * rhs^-1`; dividing by zero gives zero (see [`Gf16::inverse`]).
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn div(self, rhs: Gf16) -> Gf16 {
        self * rhs.inverse()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    /// Schoolbook reference: carry-less product of the two 16-bit polynomials (up to degree 30),
    /// then reduction bit by bit from the top, independent of the tables.
    fn slow_mul(a: u16, b: u16) -> u16 {
        let mut product: u32 = 0;
        for bit in 0..16 {
            if (b >> bit) & 1 == 1 {
                product ^= u32::from(a) << bit;
            }
        }
        for bit in (16..32).rev() {
            if (product >> bit) & 1 == 1 {
                product ^= MODULUS << (bit - 16);
            }
        }
        assert!(product < 0x1_0000);
        product as u16
    }

    fn g() -> impl Strategy<Value = Gf16> {
        any::<u16>().prop_map(Gf16)
    }

    #[test]
    fn known_products() {
        // x * x^15 = x^16 = x^12 + x^3 + x + 1.
        assert_eq!(Gf16(2) * Gf16(0x8000), Gf16(0x100B));
        assert_eq!(slow_mul(2, 0x8000), 0x100B);
        // x^8 * x^8 = x^16 as well.
        assert_eq!(Gf16(0x100) * Gf16(0x100), Gf16(0x100B));
        // Without reduction the field product is the carry-less one: (x+1)(x+1) = x^2 + 1.
        assert_eq!(Gf16(3) * Gf16(3), Gf16(5));
        assert_eq!(Gf16(0x00FF) * Gf16(0x00FF), Gf16(0x5555));
        // (x^15 + ... + 1) * x = x^16 + ... + x = (x^15 + ... + x) + (x^12 + x^3 + x + 1).
        assert_eq!(Gf16(0xFFFF).times_x(), Gf16(0xFFFE ^ 0x100B));
        for (a, b) in [(0x1234, 0x5678), (0xFFFF, 0xFFFF), (0x8001, 0x7FFE), (0xABCD, 0x0001)] {
            assert_eq!((Gf16(a) * Gf16(b)).0, slow_mul(a, b), "{a:04x} * {b:04x}");
        }
    }

    #[test]
    fn generator_reaches_every_nonzero_element() {
        let mut seen = vec![false; 1 << 16];
        let mut p = Gf16::ONE;
        for _ in 0..GROUP_ORDER {
            assert!(!seen[usize::from(p.0)], "x has order below 65535");
            seen[usize::from(p.0)] = true;
            p = p.times_x();
        }
        assert_eq!(p, Gf16::ONE);
        assert!(!seen[0]);
    }

    #[test]
    fn every_inverse() {
        for a in 1..=u16::MAX {
            assert_eq!(Gf16(a) * Gf16(a).inverse(), Gf16::ONE, "{a:04x}");
        }
        assert_eq!(Gf16::ZERO.inverse(), Gf16::ZERO);
    }

    proptest! {
        #[test]
        fn mul_matches_slow_reference(a in any::<u16>(), b in any::<u16>()) {
            prop_assert_eq!((Gf16(a) * Gf16(b)).0, slow_mul(a, b));
        }

        #[test]
        fn field_laws(a in g(), b in g(), c in g()) {
            prop_assert_eq!(a + b, b + a);
            prop_assert_eq!(a * b, b * a);
            prop_assert_eq!((a + b) + c, a + (b + c));
            prop_assert_eq!((a * b) * c, a * (b * c));
            prop_assert_eq!(a * (b + c), a * b + a * c);
            prop_assert_eq!(a + Gf16::ZERO, a);
            prop_assert_eq!(a * Gf16::ONE, a);
            prop_assert_eq!(a * Gf16::ZERO, Gf16::ZERO);
            prop_assert_eq!(a - a, Gf16::ZERO);
            prop_assert_eq!((a + b) - b, a);
            if b != Gf16::ZERO {
                prop_assert_eq!((a / b) * b, a);
                prop_assert_eq!(b.inverse().inverse(), b);
            }
        }
    }
}
