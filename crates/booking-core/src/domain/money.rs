//! Money in integer minor units (cents, won, ...), with checked arithmetic only.

use std::fmt;

use super::ValueError;

/// A non-negative sum of money in minor units: a balance, a revenue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);

    /// Validates a sum: it must not be negative.
    pub fn new(minor_units: i64) -> Result<Self, ValueError> {
        if minor_units < 0 {
            return Err(ValueError::NegativeMoney(minor_units));
        }
        Ok(Money(minor_units))
    }

    /// The sum in minor units.
    pub const fn minor_units(self) -> i64 {
        self.0
    }

    /// `self + amount`, or `None` on overflow.
    pub fn checked_add(self, amount: Amount) -> Option<Money> {
        self.0.checked_add(amount.0).map(Money)
    }

    /// `self - amount`, or `None` when the result would be negative.
    pub fn checked_sub(self, amount: Amount) -> Option<Money> {
        let rest = self.0.checked_sub(amount.0)?;
        (rest >= 0).then_some(Money(rest))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A strictly positive sum in minor units: what a charge adds, what a seat costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    /// Validates an amount: it must be at least 1.
    pub fn new(minor_units: i64) -> Result<Self, ValueError> {
        if minor_units < 1 {
            return Err(ValueError::NonPositiveAmount(minor_units));
        }
        Ok(Amount(minor_units))
    }

    /// The amount in minor units.
    pub const fn minor_units(self) -> i64 {
        self.0
    }

    /// The sum of `amounts`, or `None` when there are none or it overflows.
    pub fn total(amounts: impl IntoIterator<Item = Amount>) -> Option<Amount> {
        let mut it = amounts.into_iter();
        let first = it.next()?;
        it.try_fold(first, |sum, a| sum.0.checked_add(a.0).map(Amount))
    }

    /// The amount as a (positive) sum of money.
    pub const fn as_money(self) -> Money {
        Money(self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        assert!(Money::new(-1).is_err());
        assert_eq!(Money::new(0).unwrap(), Money::ZERO);
        assert!(Amount::new(0).is_err());
        assert!(Amount::new(-3).is_err());
        assert_eq!(Amount::new(1).unwrap().minor_units(), 1);
    }

    #[test]
    fn arithmetic_is_checked() {
        let max = Money::new(i64::MAX).unwrap();
        assert_eq!(max.checked_add(Amount::new(1).unwrap()), None);
        let ten = Money::new(10).unwrap();
        assert_eq!(ten.checked_sub(Amount::new(11).unwrap()), None);
        assert_eq!(ten.checked_sub(Amount::new(10).unwrap()), Some(Money::ZERO));
    }

    proptest! {
        #[test]
        fn money_never_goes_negative(a in 0i64..i64::MAX, b in 1i64..i64::MAX) {
            let m = Money::new(a).unwrap();
            let amount = Amount::new(b).unwrap();
            match m.checked_sub(amount) {
                Some(rest) => prop_assert_eq!(rest.minor_units(), a - b),
                None => prop_assert!(b > a),
            }
            match m.checked_add(amount) {
                Some(sum) => prop_assert_eq!(sum.minor_units(), a + b),
                None => prop_assert!(a.checked_add(b).is_none()),
            }
        }

        #[test]
        fn constructors_accept_exactly_their_range(v in any::<i64>()) {
            prop_assert_eq!(Money::new(v).is_ok(), v >= 0);
            prop_assert_eq!(Amount::new(v).is_ok(), v >= 1);
        }
    }
}
