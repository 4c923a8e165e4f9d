-- Starter state of the demo lab: what every participant begins with.
CREATE SCHEMA shop;

CREATE TABLE shop.customers (
    customer_id integer PRIMARY KEY,
    name        text NOT NULL,
    city        text NOT NULL
);

CREATE TABLE shop.products (
    product_id integer PRIMARY KEY,
    name       text NOT NULL,
    price      numeric(8,2) NOT NULL CHECK (price >= 0),
    stock      integer NOT NULL DEFAULT 0
);

CREATE TABLE shop.orders (
    order_id    integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES shop.customers,
    product_id  integer NOT NULL REFERENCES shop.products,
    quantity    integer NOT NULL CHECK (quantity > 0),
    ordered_at  timestamptz NOT NULL
);

INSERT INTO shop.customers VALUES
    (1, 'Ada Lovelace', 'London'),
    (2, 'Edgar Codd', 'San Jose'),
    (3, 'Grace Hopper', 'Arlington'),
    (4, 'Alan Turing', 'Manchester'),
    (5, 'Barbara Liskov', 'Cambridge');

INSERT INTO shop.products VALUES
    (1, 'Blue Teapot', 24.50, 3),
    (2, 'Green Teapot', 27.00, 0),
    (3, 'Tea Cup', 6.00, 40),
    (4, 'Kettle', 39.90, 7),
    (5, 'Loose Leaf Tea 250 g', 9.80, 55);

INSERT INTO shop.orders VALUES
    (1, 1, 1, 2, '2026-09-01 10:00+00'),
    (2, 1, 4, 1, '2026-09-03 12:30+00'),
    (3, 2, 3, 6, '2026-09-04 09:15+00'),
    (4, 3, 2, 4, '2026-09-05 16:45+00'),
    (5, 3, 5, 3, '2026-09-06 11:00+00'),
    (6, 4, 5, 1, '2026-09-07 08:20+00'),
    (7, 2, 4, 2, '2026-09-08 14:00+00');
