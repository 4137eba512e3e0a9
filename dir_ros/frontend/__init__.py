"""The hand front end: palm detection, hand landmarks, tracking, crops."""
