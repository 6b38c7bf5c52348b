#!/usr/bin/env python3
"""Writes examples/houses.csv, the README's example table: 300 synthetic house sales
(seeded; run from the repository root). price = (2400 area + 9000 rooms + a district term)
x a 4% yearly trend x a spring premium x 5% noise; "id" is an ID column and "sold" a date."""
import datetime, random
r = random.Random(2024)
rows = ["id,sold,area_m2,rooms,district,price"]
base = datetime.date(2019, 1, 1)
for i in range(300):
    d = base + datetime.timedelta(days=r.randrange(5 * 365))
    area = r.uniform(35, 220); rooms = max(1, round(area / 30 + r.gauss(0, 0.7)))
    district = r.choice(["north", "centre", "south"])
    trend = 1 + 0.04 * (d - base).days / 365          # prices rise 4% a year
    season = 1 + 0.03 * (1 if d.month in (4, 5, 6) else 0)
    price = (2400 * area + 9000 * rooms + {"north": 0, "centre": 60000, "south": -25000}[district]) * trend * season
    price *= r.gauss(1, 0.05)
    rows.append(f"H{1000 + i},{d.isoformat()},{area:.1f},{rooms},{district},{round(price, -2):.0f}")
open("examples/houses.csv", "w").write("\n".join(rows) + "\n")
