"""Frame sources with ground truth that evaluation and training both read: image folders, synthetic hands, InterHand2.6M, test clips, RGB-D frames."""
