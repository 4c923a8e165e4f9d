-- Reference (solved) state of the demo lab: the starter plus every task done.
\ir starter.sql

CREATE TABLE shop.reviews (
    review_id  serial PRIMARY KEY,
    product_id integer NOT NULL REFERENCES shop.products,
    stars      integer NOT NULL CHECK (stars BETWEEN 1 AND 5),
    body       text
);

CREATE VIEW shop.big_spenders AS
SELECT c.customer_id, c.name, sum(o.quantity * p.price) AS total
FROM shop.customers c
JOIN shop.orders o USING (customer_id)
JOIN shop.products p USING (product_id)
GROUP BY c.customer_id, c.name
HAVING sum(o.quantity * p.price) > 100;

UPDATE shop.products SET stock = 20 WHERE name LIKE '%Teapot%';

INSERT INTO shop.orders VALUES (8, 5, 3, 2, '2026-09-10 10:00+00');
