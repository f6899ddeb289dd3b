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
use crate::convert::{self as cv, is_unique_violation, sqlite_err as db};
use crate::rows::{concert_of, schedule_of, seat_of};

use super::{SqliteStore, commit, first, one};

impl CatalogRepo for SqliteStore {
    async fn create_concert(&self, new: NewConcert) -> Result<Concert, StoreError> {
        let row = sqlx::query("INSERT INTO concerts (name) VALUES (?) RETURNING id, name")
            .bind(new.name.as_str())
            .fetch_all(&self.write)
            .await
            .and_then(one)
            .map_err(db)?;
        concert_of(&row)
    }

    async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, CreateScheduleError> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM concerts WHERE id = ?")
            .bind(new.concert().get())
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(db)?;
        if exists.is_none() {
            return Err(CreateScheduleError::UnknownConcert);
        }
        let inserted = sqlx::query(
            "INSERT INTO schedules (concert_id, starts_at, date, seat_count) VALUES (?, ?, ?, ?)
             RETURNING id, concert_id, starts_at, seat_count",
        )
        .bind(new.concert().get())
        .bind(new.starts_at().as_millis())
        .bind(new.date().to_string())
        .bind(i64::from(new.seat_count().get()))
        .fetch_all(&mut *tx)
        .await
        .and_then(one);
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => {
                return Err(CreateScheduleError::DateTaken(new.date()));
            }
            Err(e) => return Err(db(e).into()),
        };
        let schedule = schedule_of(&row)?;
        for no in new.seat_count().seats() {
            sqlx::query("INSERT INTO seats (schedule_id, seat_no, price) VALUES (?, ?, ?)")
                .bind(schedule.id.get())
                .bind(i64::from(no.get()))
                .bind(new.prices().price_of(no).minor_units())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        commit(tx).await?;
        Ok(schedule)
    }

    async fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        let rows = sqlx::query("SELECT id, name FROM concerts ORDER BY id")
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(concert_of).collect()
    }

    async fn concert(&self, id: ConcertId) -> Result<Option<Concert>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM concerts WHERE id = ?")
            .bind(id.get())
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.as_ref().map(concert_of).transpose()
    }

    async fn schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(),
            " FROM schedules WHERE id = ?"
        ))
        .bind(id.get())
        .fetch_optional(&self.read)
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
            " FROM schedules WHERE concert_id = ? AND date = ?"
        ))
        .bind(concert.get())
        .bind(date.to_string())
        .fetch_optional(&self.read)
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
                    SUM(st.sold = 0 AND (st.hold_until IS NULL OR st.hold_until <= ?1)) AS n_free,
                    SUM(st.sold = 0 AND st.hold_until > ?1) AS n_held,
                    SUM(st.sold) AS n_sold,
                    SUM(CASE WHEN st.sold = 1 THEN st.price ELSE 0 END) AS revenue
             FROM schedules s JOIN seats st ON st.schedule_id = s.id
             WHERE s.concert_id = ?2
             GROUP BY s.id
             ORDER BY s.starts_at, s.id",
        )
        .bind(now.as_millis())
        .bind(concert.get())
        .fetch_all(&self.read)
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
             WHERE schedule_id = ? ORDER BY seat_no",
        )
        .bind(schedule.get())
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(|r| seat_of(r, now)).collect()
    }
}
