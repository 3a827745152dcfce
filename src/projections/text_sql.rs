//! [`text_sql!`]: the PostgreSQL conversions of an enum the read tables
//! store as text (course and lesson statuses, checkpoint states).

/// Implements `ToSql` and `FromSql` for `$type`, stored as its name in a
/// `text` column (and parameter) and read back by parsing the name.
///
/// `$type` needs an `as_str(&self) -> &'static str` method and a `FromStr`
/// whose error is a `std::error::Error + Send + Sync + 'static`.
macro_rules! text_sql {
    ($type:ty) => {
        impl ::tokio_postgres::types::ToSql for $type {
            fn to_sql(
                &self,
                ty: &::tokio_postgres::types::Type,
                out: &mut ::bytes::BytesMut,
            ) -> Result<::tokio_postgres::types::IsNull, Box<dyn ::std::error::Error + Sync + Send>>
            {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &::tokio_postgres::types::Type) -> bool {
                <&str as ::tokio_postgres::types::ToSql>::accepts(ty)
            }

            ::tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> ::tokio_postgres::types::FromSql<'a> for $type {
            fn from_sql(
                ty: &::tokio_postgres::types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn ::std::error::Error + Sync + Send>> {
                Ok(
                    <&str as ::tokio_postgres::types::FromSql>::from_sql(ty, raw)?
                        .parse::<$type>()?,
                )
            }

            fn accepts(ty: &::tokio_postgres::types::Type) -> bool {
                <&str as ::tokio_postgres::types::FromSql>::accepts(ty)
            }
        }
    };
}

pub(crate) use text_sql;
