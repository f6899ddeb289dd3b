//! Catalog: concerts, schedules, the bookable dates and the seat map
//! (`CatalogRepo`).

use booking_core::StoreError;
use booking_core::domain::{
    Concert, ConcertId, NewConcert, NewSchedule, Schedule, ScheduleId, ScheduleSummary, Seat,
    Timestamp,
};
use booking_core::ports::{CatalogRepo, CreateScheduleError};
use chrono::NaiveDate;
use sqlx::Row;

use crate::columns::schedule_cols;
use crate::convert::{self as cv, is_unique_violation, pg_err as db};
use crate::rows::{concert_of, schedule_of, seat_of};

use super::{PgStore, is_fk_violation};

impl CatalogRepo for PgStore {
    async fn create_concert(&self, new: NewConcert) -> Result<Concert, StoreError> {
        let row = sqlx::query("INSERT INTO concerts (name) VALUES ($1) RETURNING id, name")
            .bind(new.name.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        concert_of(&row)
    }

    /// One statement: the schedule and its seats. An unknown concert fails the
    /// foreign key, a taken date the unique (concert, date); either way nothing is
    /// written.
    async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, CreateScheduleError> {
        let prices: Vec<i64> = new
            .seat_count()
            .seats()
            .map(|no| new.prices().price_of(no).minor_units())
            .collect();
        let inserted = sqlx::query(concat!(
            "WITH sch AS (
                INSERT INTO schedules (concert_id, starts_at, date, seat_count)
                VALUES ($1, $2, $3::date, $4)
                RETURNING ",
            schedule_cols!(),
            "
            ), st AS (
                INSERT INTO seats (schedule_id, seat_no, price)
                SELECT sch.id, p.n, p.price
                FROM sch, unnest($5::bigint[]) WITH ORDINALITY AS p (price, n)
            )
            SELECT ",
            schedule_cols!(),
            " FROM sch"
        ))
        .bind(new.concert().get())
        .bind(new.starts_at().as_millis())
        .bind(new.date().to_string())
        .bind(i64::from(new.seat_count().get()))
        .bind(prices)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => Ok(schedule_of(&row)?),
            Err(e) if is_fk_violation(&e) => Err(CreateScheduleError::UnknownConcert),
            Err(e) if is_unique_violation(&e) => Err(CreateScheduleError::DateTaken(new.date())),
            Err(e) => Err(db(e).into()),
        }
    }

    async fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        let rows = sqlx::query("SELECT id, name FROM concerts ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(concert_of).collect()
    }

    async fn concert(&self, id: ConcertId) -> Result<Option<Concert>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM concerts WHERE id = $1")
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(concert_of).transpose()
    }

    async fn schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(),
            " FROM schedules WHERE id = $1"
        ))
        .bind(id.get())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(schedule_of).transpose()
    }

    async fn schedule_on(
        &self,
        concert: ConcertId,
        date: NaiveDate,
    ) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(),
            " FROM schedules WHERE concert_id = $1 AND date = $2::date"
        ))
        .bind(concert.get())
        .bind(date.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(schedule_of).transpose()
    }

    async fn schedule_summaries(
        &self,
        concert: ConcertId,
        now: Timestamp,
    ) -> Result<Vec<ScheduleSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id, s.concert_id, s.starts_at, s.seat_count,
                    count(*) FILTER (WHERE NOT st.sold
                                       AND (st.hold_until IS NULL OR st.hold_until <= $1))
                        AS n_free,
                    count(*) FILTER (WHERE NOT st.sold AND st.hold_until > $1) AS n_held,
                    count(*) FILTER (WHERE st.sold) AS n_sold,
                    COALESCE(sum(st.price) FILTER (WHERE st.sold), 0)::bigint AS revenue
             FROM schedules s JOIN seats st ON st.schedule_id = s.id
             WHERE s.concert_id = $2
             GROUP BY s.id
             ORDER BY s.starts_at, s.id",
        )
        .bind(now.as_millis())
        .bind(concert.get())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let count = |c: &str| -> Result<u32, StoreError> {
                    let n: i64 = r.try_get(c).map_err(db)?;
                    u32::try_from(n).map_err(|e| cv::corrupt(c, e))
                };
                Ok(ScheduleSummary {
                    schedule: schedule_of(r)?,
                    n_free: count("n_free")?,
                    n_held: count("n_held")?,
                    n_sold: count("n_sold")?,
                    revenue: cv::money(r.try_get("revenue").map_err(db)?)?,
                })
            })
            .collect()
    }

    async fn seats(&self, schedule: ScheduleId, now: Timestamp) -> Result<Vec<Seat>, StoreError> {
        let rows = sqlx::query(
            "SELECT seat_no, price, sold, hold_until FROM seats
             WHERE schedule_id = $1 ORDER BY seat_no",
        )
        .bind(schedule.get())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| seat_of(r, now)).collect()
    }
}
