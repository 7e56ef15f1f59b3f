package android.graphics;

public class Color {
    public static final int WHITE = 0xFFFFFFFF;
    public static final int YELLOW = 0xFFFFFF00;
}
